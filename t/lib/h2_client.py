#!/usr/bin/env python3
"""HTTP/2 scenarios against a server, with the `h2` library (Python Hyper project) as a
client nobody here wrote: the tests (t/46-http2.t) run one scenario and read the JSON
it prints. Usage: h2_client.py SCENARIO PORT [ARG...]"""

import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def connect(port, tls=False):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def pump(sock, conn, until, timeout=10.0):
    """Reads until until(events_so_far) is true; returns every event seen"""
    seen = []
    deadline = time.time() + timeout
    while not until(seen):
        left = deadline - time.time()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            seen.append(h2.events.ConnectionTerminated())
            break
        for ev in conn.receive_data(data):
            seen.append(ev)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    return seen


def ended(stream_id):
    return lambda seen: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream_id
                            for e in seen) or any(isinstance(e, h2.events.ConnectionTerminated) for e in seen)


def response(seen, stream_id):
    r = {"status": None, "headers": {}, "body": b"", "trailers": {}, "ended": False, "reset": None}
    for e in seen:
        if getattr(e, "stream_id", None) != stream_id:
            continue
        if isinstance(e, h2.events.ResponseReceived):
            for n, v in e.headers:
                if n == ":status":
                    r["status"] = int(v)
                else:
                    r["headers"][n] = v
        elif isinstance(e, h2.events.InformationalResponseReceived):
            r.setdefault("interim", []).append(int(dict(e.headers)[":status"]))
        elif isinstance(e, h2.events.DataReceived):
            r["body"] += e.data
        elif isinstance(e, h2.events.TrailersReceived):
            r["trailers"] = dict(e.headers)
        elif isinstance(e, h2.events.StreamEnded):
            r["ended"] = True
        elif isinstance(e, h2.events.StreamReset):
            r["reset"] = e.error_code
    r["body"] = r["body"].decode("latin-1")
    return r


def req_headers(method, path, extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")] + list(extra)


def terminated(seen):
    for e in seen:
        if isinstance(e, h2.events.ConnectionTerminated):
            return {"code": e.error_code, "last_stream_id": e.last_stream_id}
    return None


def ws_frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_parse(data):
    """Server frames (unmasked) in data: [(opcode, payload), ...]"""
    frames, i = [], 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            n, j = struct.unpack("!H", data[j:j + 2])[0], j + 2
        elif n == 127:
            n, j = struct.unpack("!Q", data[j:j + 8])[0], j + 8
        if j + n > len(data):
            break
        frames.append((b0 & 0x0F, data[j:j + n]))
        i = j + n
    return frames


def scenario_websocket(port, path="/ws"):
    """RFC 8441: the server's SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT, a
    text message echoed, a ping answered, the close handshake"""
    sock, conn = connect(port)
    seen = pump(sock, conn, lambda s: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in s))
    settings = {}
    for e in seen:
        if isinstance(e, h2.events.RemoteSettingsChanged):
            settings = {int(k): v.new_value for k, v in e.changed_settings.items()}
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                            (":path", path), (":authority", "localhost"), ("sec-websocket-version", "13"),
                            ("sec-websocket-protocol", "chat, other")])
    sock.sendall(conn.data_to_send())
    seen += pump(sock, conn, lambda s: any(isinstance(e, h2.events.ResponseReceived) for e in s))
    r = response(seen, sid)
    conn.send_data(sid, ws_frame(1, "héllo".encode()) + ws_frame(9, b"pi"))
    sock.sendall(conn.data_to_send())
    got = b""
    def two_frames(s):
        nonlocal got
        got = b"".join(e.data for e in s if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        return len(ws_parse(got)) >= 2
    seen += pump(sock, conn, two_frames)
    frames = ws_parse(got)
    conn.send_data(sid, ws_frame(8, struct.pack("!H", 1000) + b"bye"))
    sock.sendall(conn.data_to_send())
    def closed(s):
        data = b"".join(e.data for e in s if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        return any(op == 8 for op, _ in ws_parse(data)) and ended(sid)(s)
    seen += pump(sock, conn, closed)
    data = b"".join(e.data for e in seen if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    all_frames = ws_parse(data)
    close = [p for op, p in all_frames if op == 8]
    conn.end_stream(sid)
    sock.sendall(conn.data_to_send())
    time.sleep(0.2)
    return {"connect_protocol": settings.get(8), "status": r["status"], "headers": r["headers"],
            "frames": [[op, p.decode("utf-8", "replace")] for op, p in frames],
            "close": struct.unpack("!H", close[0][:2])[0] if close else None,
            "stream_ended": any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in seen)}


def scenario_flow(port, total="300000"):
    """Flow control follows the app: a body bigger than the stream's window stops at the
    window until the app reads (GET /hold first makes it read only after /release)"""
    total = int(total)
    sock, conn = connect(port)
    pump(sock, conn, lambda s: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in s), 2)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/slowread", [("content-length", str(total))]))
    sent = 0
    # Send what the windows allow, and wait a moment: a server that gave window back
    # without the app reading would let more through
    for _ in range(3):
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        while window > 0 and sent < total:
            n = min(window, total - sent)
            conn.send_data(sid, b"x" * n)
            sent += n
            window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        sock.sendall(conn.data_to_send())
        pump(sock, conn, lambda s: False, 0.4)
    stalled_at = sent
    # The app now reads (the request it made tells it to)
    sid2 = conn.get_next_available_stream_id()
    conn.send_headers(sid2, req_headers("GET", "/release"), end_stream=True)
    sock.sendall(conn.data_to_send())
    deadline = time.time() + 15
    seen = []
    while sent < total and time.time() < deadline:
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if window > 0:
            n = min(window, total - sent)
            conn.send_data(sid, b"x" * n, end_stream=(sent + n == total))
            sent += n
            sock.sendall(conn.data_to_send())
        else:
            seen += pump(sock, conn, lambda s: False, 0.05)
    seen += pump(sock, conn, ended(sid))
    return {"stalled_at": stalled_at, "sent": sent, "response": response(seen, sid)}


def scenario_continue(port):
    """Expect: 100-continue (RFC 9113 8.1): an interim 100 when the app reads, then the body"""
    sock, conn = connect(port)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/echo", [("expect", "100-continue"), ("content-length", "5")]))
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, lambda s: any(isinstance(e, h2.events.InformationalResponseReceived) for e in s), 5)
    got_100 = any(isinstance(e, h2.events.InformationalResponseReceived) for e in seen)
    conn.send_data(sid, b"hello", end_stream=True)
    sock.sendall(conn.data_to_send())
    seen += pump(sock, conn, ended(sid))
    return {"interim_before_body": got_100, "response": response(seen, sid)}


def scenario_reset(port):
    """The client resets a stream whose app is waiting: the app's receive gets
    http.disconnect (it reports it at /reported); the connection goes on"""
    sock, conn = connect(port)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/wait-disconnect"))
    conn.send_data(sid, b"part")
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda s: False, 0.3)
    conn.reset_stream(sid, error_code=8)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda s: False, 0.3)
    sid2 = conn.get_next_available_stream_id()
    conn.send_headers(sid2, req_headers("GET", "/reported"), end_stream=True)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(sid2))
    return {"after": response(seen, sid2)}


def scenario_many(port, n="20"):
    """Many streams at once on one connection, answered out of order (slow ones and fast
    ones), each with its own body"""
    sock, conn = connect(port)
    ids = []
    for i in range(int(n)):
        sid = conn.get_next_available_stream_id()
        delay = "0.3" if i % 2 == 0 else "0"
        conn.send_headers(sid, req_headers("GET", "/delay?s=%s&i=%d" % (delay, i)), end_stream=True)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, lambda s: all(ended(i)(s) for i in ids), 15)
    order = [e.stream_id for e in seen if isinstance(e, h2.events.StreamEnded)]
    return {"bodies": [response(seen, i)["body"] for i in ids], "order": order, "ids": ids}


def scenario_limits(port):
    """A server started with --max-body-size 1000 --h2-max-concurrent-streams 2 --timeout 1:
    a body announced too big, a body that grows too big, a stream over the limit, then
    the connection left idle"""
    sock, conn = connect(port)
    # (sent before the server's SETTINGS are read, so the client does not hold them back)
    slow = []
    for i in range(3):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, req_headers("GET", "/delay?s=0.5&i=%d" % i), end_stream=True)
        slow.append(sid)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, lambda s: all(ended(i)(s) for i in slow), 10)
    r = {"concurrent": [response(seen, i) for i in slow]}
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/echo", [("content-length", "5000")]))
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(sid), 5)
    r["announced"] = response(seen, sid)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/echo"))
    conn.send_data(sid, b"y" * 600)
    conn.send_data(sid, b"y" * 600)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(sid), 5)
    r["grown"] = response(seen, sid)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("POST", "/echo"))
    conn.send_data(sid, b"small", end_stream=True)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(sid), 5)
    r["after"] = response(seen, sid)
    start = time.time()
    seen = pump(sock, conn, lambda s: any(isinstance(e, h2.events.ConnectionTerminated) for e in s), 5)
    r["idle_goaway"] = terminated(seen)
    r["idle_seconds"] = round(time.time() - start, 1)
    sock.settimeout(3)
    try:
        r["closed"] = sock.recv(65536) == b""
    except (socket.timeout, ConnectionResetError):
        r["closed"] = False
    return r


def scenario_backpressure(port):
    """A stream whose client does not read (window 0) holds its app's sends; another
    stream on the same connection is answered meanwhile"""
    sock, conn = connect(port)
    # A small window for our side: the server can send little before we read
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    sock.sendall(conn.data_to_send())
    pump(sock, conn, lambda s: any(isinstance(e, h2.events.SettingsAcknowledged) for e in s), 3)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, req_headers("GET", "/big"), end_stream=True)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, lambda s: False, 0.5)
    # (h2 acknowledges data as flow control: nothing read is not acknowledged here)
    got_before = sum(len(e.data) for e in seen if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    sid2 = conn.get_next_available_stream_id()
    conn.send_headers(sid2, req_headers("GET", "/transport-report"), end_stream=True)
    sock.sendall(conn.data_to_send())
    seen += pump(sock, conn, ended(sid2))
    other = response(seen, sid2)
    # Now read the big one: what came so far, then the rest as it comes
    acked = set()
    def read_all(s):
        for e in seen + s:
            if isinstance(e, h2.events.DataReceived) and id(e) not in acked:
                acked.add(id(e))
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        sock.sendall(conn.data_to_send())
        return ended(sid)(s)
    seen += pump(sock, conn, read_all, 15)
    big = response(seen, sid)
    return {"got_before": got_before, "other": other, "big_length": len(big["body"]), "big_ended": big["ended"]}


if __name__ == "__main__":
    name, port = sys.argv[1], int(sys.argv[2])
    result = globals()["scenario_" + name](port, *sys.argv[3:])
    print(json.dumps(result, sort_keys=True))
