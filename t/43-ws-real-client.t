use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use File::Temp ();
use JSON::PP ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Interoperability with a WebSocket client that is not ours: Python's `websockets`
# (sync client) against the server on loopback, over ws:// and wss:// (TLS). Echo of
# text and binary, fragmented sends, a large message, ping/pong, subprotocol
# negotiation and the close code and reason round trip, with permessage-deflate (the
# client's default: it offers it, we accept) and without. Skips only when python3 or the module is not installed
# (script/install-deps installs it).

my $python = $ENV{PAGI_TEST_PYTHON} // 'python3';
my $probe = `$python -c "import websockets, websockets.sync.client; print(websockets.__version__)" 2>&1`;
plan skip_all => "needs python3 with the websockets module (pip install websockets): "
  . ($probe =~ s/\s+\z//r =~ s/.*\n//sr) if $?;
diag "python websockets $probe" =~ s/\s+\z//r;

my $client = <<'PY';
import json, random, ssl, sys
from websockets.sync.client import connect
port = int(sys.argv[1])
tls = len(sys.argv) > 2 and sys.argv[2] == "wss"
compression = None if len(sys.argv) > 3 and sys.argv[3] == "plain" else "deflate"
ctx = None
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
out = {}
with connect(f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/echo", subprotocols=["chat", "superchat"],
             open_timeout=5, close_timeout=5, max_size=2**22, ssl=ctx, compression=compression) as ws:
    out["subprotocol"] = ws.subprotocol
    out["extensions"] = [e.name for e in ws.protocol.extensions]
    doc = json.dumps({"items": [{"id": i, "name": "item %d" % i} for i in range(40)]})
    ws.send(doc)
    out["json_ok"] = ws.recv(timeout=5) == "echo: " + doc
    rnd = bytes(random.getrandbits(8) for _ in range(1024))
    ws.send(rnd)
    out["random_ok"] = ws.recv(timeout=5) == b"echo: " + rnd
    ws.send("h\u00e9llo \u2603")
    out["text"] = ws.recv(timeout=5)
    ws.send(b"\x00\xff\x80")
    out["bytes"] = list(ws.recv(timeout=5))
    ws.send(["frag", "men", "ted \u2603"])            # one message, three frames
    out["fragmented"] = ws.recv(timeout=5)
    ws.send([b"\x01", b"\x02"])
    out["fragmented_bytes"] = list(ws.recv(timeout=5))
    big = "x" * 200000
    ws.send(big)
    out["big_ok"] = ws.recv(timeout=5) == "echo: " + big
    pong = ws.ping(b"are you there")
    out["pong"] = pong.wait(5)
    ws.close(code=4001, reason="bye \u2603")
    rcvd = ws.protocol.close_rcvd
    out["close_code"] = rcvd.code if rcvd else None
    out["close_reason"] = rcvd.reason if rcvd else None
print(json.dumps(out))
PY

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  await $receive->();
  report(scheme => $scope->{scheme});
  my ($proto) = grep { $_ eq 'superchat' } @{$scope->{subprotocols}};
  await $send->({type => 'websocket.accept', subprotocol => $proto});
  while (1) {
    my $ev = await $receive->();
    if ($ev->{type} eq 'websocket.disconnect') { report(ev => $ev); last }
    if (defined $ev->{text}) { await $send->({type => 'websocket.send', text => "echo: $ev->{text}"}) }
    else { await $send->({type => 'websocket.send', bytes => "echo: $ev->{bytes}"}) }
  }
};

my $script = File::Temp->new(SUFFIX => '.py', TMPDIR => 1);
print {$script} $client;
close $script;

sub run_client ($srv, $name, @args) {
  my $out = `timeout 30 $python $script @{[$srv->port]} @args 2>&1`;
  is($?, 0, "$name: the python client ran to the end") or diag $out;
  my ($json) = $out =~ /^(\{.*\})$/m;
  my $r = eval { JSON::PP->new->decode($json // '') } || {};
  is($r->{subprotocol}, 'superchat', "$name: subprotocol negotiated");
  is_deeply($r->{extensions}, ($args[1] // '') eq 'plain' ? [] : ['permessage-deflate'],
    "$name: permessage-deflate " . (($args[1] // '') eq 'plain' ? 'not offered, not used' : 'negotiated (the client offers it)'));
  ok($r->{json_ok}, "$name: a compressible JSON message echoed");
  ok($r->{random_ok}, "$name: 1 KiB of random bytes echoed");
  is($r->{text}, "echo: h\x{e9}llo \x{2603}", "$name: text echo (UTF-8 both ways)");
  is_deeply($r->{bytes}, [map { ord } split //, "echo: \x00\xff\x80"], "$name: binary echo");
  is($r->{fragmented}, "echo: fragmented \x{2603}", "$name: a fragmented text message is reassembled");
  is_deeply($r->{fragmented_bytes}, [map { ord } split //, "echo: \x01\x02"], "$name: fragmented binary");
  ok($r->{big_ok}, "$name: a 200 kB message both ways");
  ok($r->{pong}, "$name: ping answered with pong");
  is($r->{close_code}, 4001, "$name: the server echoes the close code");
  my @rep;
  wait_for(sub { @rep = grep { $_->{ev} } $srv->reports; @rep }, 5);
  is_deeply($rep[0]{ev}, {type => 'websocket.disconnect', code => 4001, reason => "bye \x{2603}"},
    "$name: the app sees the client's close code and reason");
  return map { $_->{scheme} // () } $srv->reports;
}

subtest 'ws://' => sub {
  my $srv = start_server(app => $app);
  ok($srv->port, 'server started') or return diag $srv->log;
  my ($scheme) = run_client($srv, 'ws');
  is($scheme, 'ws', 'scheme ws');
  run_client($srv, 'ws, no compression', 'ws', 'plain');
  is($srv->stop, 0, 'server exits 0');
};

# The permessage-deflate parameters a client can ask for (RFC 7692 7.1), each agreed
# with websockets' own implementation and then used for a stream of messages that
# exercises the kept context (or its reset): compressible JSON, random bytes, long
# runs, fragmented text. What the client reports it agreed is checked too: the
# server's window within what the client allowed, the no-context-takeover flags it
# asked for.
my $params_client = <<'PY';
import json, random, sys
from websockets.sync.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory as F
port = int(sys.argv[1])
configs = {
    "default": F(),
    "client_no_context_takeover": F(client_no_context_takeover=True),
    "server_no_context_takeover": F(server_no_context_takeover=True),
    "both no_context_takeover": F(client_no_context_takeover=True, server_no_context_takeover=True),
    "server_max_window_bits=9": F(server_max_window_bits=9),
    "client_max_window_bits=9": F(client_max_window_bits=9),
    "client_max_window_bits (no value)": F(client_max_window_bits=True),
    "server_max_window_bits=15": F(server_max_window_bits=15),
}
out = {}
for name, f in configs.items():
    r = out[name] = {"ok": False}
    try:
        with connect(f"ws://127.0.0.1:{port}/echo", extensions=[f], compression=None,
                     max_size=2**22, open_timeout=5, close_timeout=5) as ws:
            pmd = ws.protocol.extensions[0]
            r["server_no_context_takeover"] = pmd.remote_no_context_takeover
            r["client_no_context_takeover"] = pmd.local_no_context_takeover
            r["server_max_window_bits"] = pmd.remote_max_window_bits
            r["client_max_window_bits"] = pmd.local_max_window_bits
            rnd = random.Random(7)
            for i in range(80):
                kind = i % 4
                if kind == 0: m = json.dumps({"i": i, "items": ["x%d" % j for j in range(rnd.randint(0, 200))]})
                elif kind == 1: m = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 3000)))
                elif kind == 2: m = "a" * rnd.randint(0, 70000)
                else: m = ["frag%d " % i, "ment " * 50, "end"]
                ws.send(m)
                got = ws.recv(timeout=5)
                want = m if not isinstance(m, list) else "".join(m)
                if got != (("echo: " + want) if isinstance(want, str) else b"echo: " + want):
                    r["failed_at"] = i
                    break
            else:
                r["ok"] = True
    except Exception as e:
        r["error"] = repr(e)
print(json.dumps(out))
PY

subtest 'permessage-deflate parameters a client asks for (websockets)' => sub {
  my $srv = start_server(app => $app);
  ok($srv->port, 'server started') or return diag $srv->log;
  my $py = File::Temp->new(SUFFIX => '.py', TMPDIR => 1);
  print {$py} $params_client;
  close $py;
  my $out = `timeout 60 $python $py @{[$srv->port]} 2>&1`;
  is($?, 0, 'the python client ran to the end') or diag $out;
  my ($json) = $out =~ /^(\{.*\})$/m;
  my $r = eval { JSON::PP->new->decode($json // '') } || {};
  for my $name (sort keys %$r) {
    my $c = $r->{$name};
    ok($c->{ok}, "$name: 80 messages echoed (JSON, random, long runs, fragmented)")
      or diag explain $c;
  }
  is(scalar keys %$r, 8, 'every configuration ran');
  ok($r->{client_no_context_takeover}{client_no_context_takeover}, 'client_no_context_takeover: agreed');
  ok(!$r->{client_no_context_takeover}{server_no_context_takeover}, '... and the server keeps its context');
  ok($r->{server_no_context_takeover}{server_no_context_takeover}, 'server_no_context_takeover: agreed');
  is($r->{'server_max_window_bits=9'}{server_max_window_bits}, 9, 'server_max_window_bits=9: the server compresses within 9 bits');
  is($r->{'server_max_window_bits=15'}{server_max_window_bits}, 12,
    'server_max_window_bits=15: the server answers with its own smaller window (12, the default)');
  is($r->{default}{server_max_window_bits}, 12, 'no server_max_window_bits offered: the server says it uses 12');
  is($r->{'client_max_window_bits=9'}{client_max_window_bits}, 9, 'client_max_window_bits=9: the client compresses within 9 bits');
  is($srv->stop, 0, 'server exits 0');
};

subtest 'wss:// (TLS)' => sub {
  plan skip_all => 'needs IO::Socket::SSL and the openssl command'
    unless eval { require IO::Socket::SSL; 1 } && system('openssl version >/dev/null 2>&1') == 0;
  my $dir = File::Temp->newdir;
  system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    . " -subj /CN=localhost -keyout $dir/key.pem -out $dir/cert.pem >/dev/null 2>&1") == 0
    or plan skip_all => 'openssl could not make a certificate';
  my $srv = start_server(app => $app, ssl_cert => "$dir/cert.pem", ssl_key => "$dir/key.pem");
  ok($srv->port, 'TLS server started') or return diag $srv->log;
  my ($scheme) = run_client($srv, 'wss', 'wss');
  is($scheme, 'wss', 'scheme wss');
  is($srv->stop, 0, 'server exits 0');
};

done_testing;
