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
# (sync client) against the server on loopback. Echo of text and binary, fragmented
# sends, a large message, ping/pong, subprotocol negotiation and the close code and
# reason round trip. Skips only when python3 or the module is not installed
# (script/install-deps installs it).

my $python = $ENV{PAGI_TEST_PYTHON} // 'python3';
my $probe = `$python -c "import websockets, sys; print(websockets.__version__)" 2>&1`;
plan skip_all => "needs python3 with the websockets module (pip install websockets): "
  . ($probe =~ s/\s+\z//r =~ s/.*\n//sr) if $?;
diag "python websockets $probe" =~ s/\s+\z//r;

my $client = <<'PY';
import json, sys
from websockets.sync.client import connect
port = int(sys.argv[1])
out = {}
with connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["chat", "superchat"],
             open_timeout=5, close_timeout=5, max_size=2**22) as ws:
    out["subprotocol"] = ws.subprotocol
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
  my ($proto) = grep { $_ eq 'superchat' } @{$scope->{subprotocols}};
  await $send->({type => 'websocket.accept', subprotocol => $proto});
  while (1) {
    my $ev = await $receive->();
    if ($ev->{type} eq 'websocket.disconnect') { report(ev => $ev); last }
    if (defined $ev->{text}) { await $send->({type => 'websocket.send', text => "echo: $ev->{text}"}) }
    else { await $send->({type => 'websocket.send', bytes => "echo: $ev->{bytes}"}) }
  }
};

my $srv = start_server(app => $app);
ok($srv->port, 'server started') or BAIL_OUT('server did not start: ' . $srv->log);

my $script = File::Temp->new(SUFFIX => '.py', TMPDIR => 1);
print {$script} $client;
close $script;
my $out = `timeout 30 $python $script @{[$srv->port]} 2>&1`;
is($?, 0, 'the python client ran to the end') or diag $out;
my ($json) = $out =~ /^(\{.*\})$/m;
my $r = eval { JSON::PP->new->decode($json // '') } || {};

is($r->{subprotocol}, 'superchat', 'subprotocol negotiated');
is($r->{text}, "echo: h\x{e9}llo \x{2603}", 'text echo (UTF-8 both ways)');
is_deeply($r->{bytes}, [map { ord } split //, "echo: \x00\xff\x80"], 'binary echo');
is($r->{fragmented}, "echo: fragmented \x{2603}", 'a fragmented text message is reassembled');
is_deeply($r->{fragmented_bytes}, [map { ord } split //, "echo: \x01\x02"], 'fragmented binary');
ok($r->{big_ok}, 'a 200 kB message both ways');
ok($r->{pong}, 'ping answered with pong');
is($r->{close_code}, 4001, 'the server echoes the close code');

my @rep;
wait_for(sub { @rep = $srv->reports; @rep }, 5);
is_deeply($rep[0]{ev}, {type => 'websocket.disconnect', code => 4001, reason => "bye \x{2603}"},
  "the app sees the client's close code and reason");

is($srv->stop, 0, 'server exits 0');
done_testing;
