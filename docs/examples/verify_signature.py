import hashlib
import hmac
import time

IDENTITY = ["x-portcullis-principal", "x-portcullis-key-id", "x-portcullis-scopes", "x-portcullis-tenant"]


def verify(secret: bytes, method: str, path: str, headers: dict, body: bytes, max_age: int = 300, now=None) -> bool:
    """True when Portcullis signed this request. `headers` maps lowercase names to values;
    `path` is the path and query exactly as received."""
    signature = headers.get("x-portcullis-signature", "")
    timestamp = headers.get("x-portcullis-timestamp", "")
    content = headers.get("x-portcullis-content-sha256", "")
    if not signature.startswith("v1=") or not timestamp.isdigit():
        return False
    now = int(time.time()) if now is None else now
    if abs(now - int(timestamp)) > max_age:
        return False
    if content != "UNSIGNED-PAYLOAD" and content != hashlib.sha256(body).hexdigest():
        return False
    lines = ["v1", method, path, timestamp, content, headers.get("x-request-id", "")]
    lines += [headers.get(name, "") for name in IDENTITY]
    expected = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest("v1=" + expected, signature)


if __name__ == "__main__":
    # Test harness: reads {"secret", "method", "path", "headers", "body"} as JSON on stdin.
    import json
    import sys

    r = json.load(sys.stdin)
    ok = verify(r["secret"].encode(), r["method"], r["path"], r["headers"], r["body"].encode())
    print("valid" if ok else "invalid")
