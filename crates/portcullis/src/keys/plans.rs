//! Usage plans: a per-key limit over all routes, per-key limits per route, and a quota.
//!
//! Plans come from the config file (the source of truth for the names it defines) and from
//! the admin API (stored, for the names the config does not define). The table is rebuilt on
//! reload and when the store changes; limiter state carries over while a limit's numbers stay
//! the same.

use crate::config::compile_limits::limit_rt;
use crate::config::model::{Partition, Plan, Throttle};
use crate::config::runtime::LimitRt;
use crate::keys::quota::Period;
use portcullis_limit::Rate;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A quota as the request path uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRt {
    /// Requests per period.
    pub limit: u64,
    /// Period length.
    pub period: Period,
    /// Shift of the period start, seconds.
    pub offset: i64,
    /// `RateLimit-Policy` value (`"quota";q=1000;w=86400`).
    pub policy: http::HeaderValue,
}

/// A compiled plan.
#[derive(Debug)]
pub struct PlanRt {
    /// Name.
    pub name: Arc<str>,
    /// Defined in the config file (else through the admin API).
    pub from_config: bool,
    /// As written.
    pub spec: Plan,
    /// Per-key limit over all routes.
    pub throttle: Option<Arc<LimitRt>>,
    /// Per-key limit per route, by route name.
    pub routes: HashMap<String, Arc<LimitRt>>,
    /// Quota.
    pub quota: Option<QuotaRt>,
}

/// Plans by name.
#[derive(Debug, Default)]
pub struct PlanTable {
    by_name: HashMap<String, Arc<PlanRt>>,
}

/// Everything wrong with a plan, as `(path below the plan, message)`.
pub fn plan_problems(plan: &Plan, route_names: &HashSet<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut check = |path: String, t: &Throttle| {
        if let Err(e) = Rate::new(t.rate, t.burst) {
            out.push((path.clone(), e.to_string()));
        }
        if t.per.is_some() {
            out.push((format!("{path}.per"), "plan limits are always per key: per is not allowed".into()));
        }
    };
    if let Some(t) = &plan.throttle {
        check("throttle".into(), t);
    }
    for (route, t) in &plan.routes {
        check(format!("routes.{route}"), t);
    }
    for route in plan.routes.keys() {
        if !route_names.contains(route.as_str()) {
            out.push((format!("routes.{route}"), format!("route {route:?} is not defined")));
        }
    }
    if let Some(q) = &plan.quota {
        if q.limit == 0 || q.limit > u64::from(u32::MAX) {
            out.push(("quota.limit".into(), "quota.limit must be between 1 and 4294967295".into()));
        }
        let longest = match q.period {
            Period::Day => Duration::from_secs(86_400),
            Period::Week => Duration::from_secs(7 * 86_400),
            Period::Month => Duration::from_secs(28 * 86_400),
        };
        if q.offset.is_some_and(|o| o.0 >= longest) {
            out.push(("quota.offset".into(), "quota.offset must be shorter than the period".into()));
        }
    }
    out
}

fn keyed(
    t: &Throttle,
    name: &'static str,
    id: String,
    max_keys: usize,
    previous: Option<&Arc<LimitRt>>,
) -> Arc<LimitRt> {
    let t = Throttle { per: Some(Partition::Key), ..t.clone() };
    limit_rt(t, name, id, max_keys, previous)
}

impl PlanRt {
    fn build(name: &str, spec: &Plan, from_config: bool, max_keys: usize, previous: Option<&Arc<PlanRt>>) -> PlanRt {
        PlanRt {
            name: Arc::from(name),
            from_config,
            throttle: spec.throttle.as_ref().map(|t| {
                keyed(t, "plan", format!("plan/{name}"), max_keys, previous.and_then(|p| p.throttle.as_ref()))
            }),
            routes: spec
                .routes
                .iter()
                .map(|(route, t)| {
                    let prev = previous.and_then(|p| p.routes.get(route));
                    (route.clone(), keyed(t, "plan-route", format!("plan/{name}/route/{route}"), max_keys, prev))
                })
                .collect(),
            quota: spec.quota.as_ref().map(|q| {
                let seconds = match q.period {
                    Period::Day => 86_400,
                    Period::Week => 7 * 86_400,
                    Period::Month => 30 * 86_400,
                };
                QuotaRt {
                    limit: q.limit,
                    period: q.period,
                    offset: q.offset.map_or(0, |o| i64::try_from(o.0.as_secs()).unwrap_or(0)),
                    policy: http::HeaderValue::from_str(&format!("\"quota\";q={};w={seconds}", q.limit))
                        .unwrap_or(http::HeaderValue::from_static("\"quota\"")),
                }
            }),
            spec: spec.clone(),
        }
    }
}

impl PlanTable {
    /// Config plans plus valid API-managed plans (JSON) whose names the config does not use.
    pub fn build(rt: &crate::config::Runtime, api: &[(String, String)], previous: Option<&PlanTable>) -> PlanTable {
        let max_keys = rt.limits.max_rate_keys;
        let prev = |name: &str| previous.and_then(|p| p.by_name.get(name));
        let mut by_name: HashMap<String, Arc<PlanRt>> = rt
            .loaded
            .config
            .plans
            .iter()
            .map(|(name, spec)| (name.clone(), Arc::new(PlanRt::build(name, spec, true, max_keys, prev(name)))))
            .collect();
        let route_names: HashSet<&str> = rt.routes.iter().map(|r| &*r.name).collect();
        for (name, json) in api {
            if by_name.contains_key(name) {
                tracing::warn!(plan = %name, "a plan stored through the admin API has the name of a config plan; the config's wins");
                continue;
            }
            match serde_json::from_str::<Plan>(json) {
                Ok(spec) if plan_problems(&spec, &route_names).is_empty() => {
                    by_name.insert(name.clone(), Arc::new(PlanRt::build(name, &spec, false, max_keys, prev(name))));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(plan = %name, "stored plan is not valid for this configuration; keys on it are refused")
                }
            }
        }
        PlanTable { by_name }
    }

    /// A plan by name.
    pub fn get(&self, name: &str) -> Option<&Arc<PlanRt>> {
        self.by_name.get(name)
    }

    /// Every plan, by name.
    pub fn all(&self) -> Vec<&Arc<PlanRt>> {
        let mut v: Vec<_> = self.by_name.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
