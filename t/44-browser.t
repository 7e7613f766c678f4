use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Path ();
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect);

# End to end in a real browser: headless Chromium loads the example pages from our
# server and their JavaScript uses WebSocket (examples/chat) and EventSource
# (examples/feed) against it. The test drives the page through the DevTools protocol
# (CDP over WebSocket, with our own test client): it types a chat message and asserts
# the page shows it echoed by the broadcast (and a message from a second, raw
# client), then asserts the feed page received N numbered SSE events. Skips only when
# no Chromium is installed (script/install-deps installs the Debian package).

use constant EVENTS => 3;

my ($chromium) = grep { -x } map { my $b = $_; map { "$_/$b" } split /:/, $ENV{PATH} }
  qw(chromium chromium-browser google-chrome);
$chromium = $ENV{PAGI_TEST_CHROMIUM} if $ENV{PAGI_TEST_CHROMIUM};
plan skip_all => 'needs Chromium (Debian package chromium; script/install-deps installs it)'
  unless $chromium && -x $chromium;

my $json = JSON::PP->new->canonical;
require PAGI::Server;

# ---- the browser -------------------------------------------------------------------

my $profile = File::Temp->newdir('pagi-chromium-XXXXXX', TMPDIR => 1, CLEANUP => 0);
my $browser_log = File::Temp->new(TEMPLATE => 'pagi-chromium-XXXXXX', SUFFIX => '.log', TMPDIR => 1);
my $browser_pid = fork // die "fork: $!";
if (!$browser_pid) {
  POSIX::setpgid(0, 0);    # its own process group, so its helpers go with it
  open(STDIN, '<', '/dev/null');
  open(STDOUT, '>>', $browser_log->filename);
  open(STDERR, '>>', $browser_log->filename);
  exec($chromium, qw(--headless --no-sandbox --disable-gpu --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --disable-extensions --remote-debugging-address=127.0.0.1 --remote-debugging-port=0
    --ignore-certificate-errors),
    "--user-data-dir=$profile", 'about:blank') or POSIX::_exit(127);
}
END {
  local $?;    # keep the test's exit status
  if ($browser_pid) {
    # The browser and its helper processes (its process group, which we created)
    kill 'TERM', -$browser_pid;
    my $t = Time::HiRes::time() + 5;
    Time::HiRes::sleep(0.05) while waitpid($browser_pid, POSIX::WNOHANG()) == 0 && Time::HiRes::time() < $t;
    kill 'KILL', -$browser_pid;
    waitpid($browser_pid, 0);
    $t = Time::HiRes::time() + 5;
    Time::HiRes::sleep(0.05) while kill(0, -$browser_pid) && Time::HiRes::time() < $t;
  }
  File::Path::remove_tree("$profile", {error => \my $ignored}) if $profile;
}

my $devtools_port;
wait_for(sub {
  ($devtools_port) = slurp("$profile/DevToolsActivePort") =~ /\A([0-9]+)\n/;
  $devtools_port || waitpid($browser_pid, POSIX::WNOHANG()) == $browser_pid;
}, 30);
ok($devtools_port, 'Chromium started with remote debugging')
  or BAIL_OUT('Chromium did not start: ' . slurp($browser_log->filename));

my ($list) = http_exchange($devtools_port, "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
my $targets = eval { $json->decode($list->[0]{body}) } || [];
my ($page) = grep { $_->{type} eq 'page' } @$targets;
ok($page, 'a page target') or BAIL_OUT('no page target: ' . ($list->[0]{body} // ''));
my ($cdp, $res) = ws_connect($devtools_port, path => $page->{webSocketDebuggerUrl} =~ s{\Aws://[^/]+}{}r,
  timeout => 10);
is($res->{status}, 101, 'DevTools WebSocket open') or BAIL_OUT('no DevTools connection');

# One CDP command; returns its result (events in between are dropped)
my $cdp_id = 0;
sub cdp ($method, %params) {
  my $id = ++$cdp_id;
  $cdp->send_text($json->encode({id => $id, method => $method, params => \%params}));
  my $deadline = Time::HiRes::time() + 10;
  while (Time::HiRes::time() < $deadline) {
    my $m = $cdp->read_message(1) or next;
    next unless defined $m->{text};
    my $r = $json->decode($m->{text});
    next unless ($r->{id} // 0) == $id;
    die "CDP $method: $r->{error}{message}\n" if $r->{error};
    return $r->{result};
  }
  die "CDP $method: no answer\n";
}

# The value of a JavaScript expression in the page
sub js ($expr) {
  my $r = cdp('Runtime.evaluate', expression => $expr, returnByValue => JSON::PP::true());
  return $r->{result}{value};
}

# Polls a JavaScript expression until it is true; returns its last value
sub js_wait ($expr, $timeout = 10) {
  my $v;
  wait_for(sub { $v = js($expr) }, $timeout);
  return $v;
}

sub navigate ($url) {
  cdp('Page.navigate', url => $url);
  return js_wait(q{document.readyState === 'complete' && document.body !== null});
}

# ---- the chat example ----------------------------------------------------------------

subtest 'examples/chat in Chromium: WebSocket' => sub {
  my $srv = start_server(app => PAGI::Server->load_app(ROOT . '/examples/chat/app.pl'));
  ok($srv->port, 'chat server started') or return;
  my $base = 'http://127.0.0.1:' . $srv->port;
  ok(navigate("$base/?name=chromium"), 'page loaded from our server');
  is(js_wait(q{document.body.dataset.state === 'open' && document.body.dataset.state}), 'open',
    'the page opened its WebSocket');
  my ($perl) = ws_connect($srv->port, path => '/ws?name=perl');
  my $texts = q{Array.from(document.querySelectorAll('#messages li')).map(li => li.textContent).join('\n')};
  like(js_wait(qq{($texts).includes('perl joined') && ($texts)}), qr/perl joined/,
    'the page shows a join notice from another client');
  js(q{document.getElementById('text').value = 'hello from the browser \u2603';
    document.getElementById('form').requestSubmit(); true});
  like(js_wait(qq{($texts).includes('chromium: hello') && ($texts)}),
    qr/^chromium: hello from the browser \x{2603}$/m, 'the page saw its chat message echoed back');
  my @seen;
  wait_for(sub { my $m = $perl->read_message(0.2); push @seen, $m->{text} if $m; grep { /hello from the browser/ } @seen }, 5);
  ok((grep { /"name":"chromium"/ && /hello from the browser \x{2603}/ } @seen),
    'the other client got the broadcast too');
  $perl->send_text($json->encode({text => 'hi browser'}));
  like(js_wait(qq{($texts).includes('perl: hi browser') && ($texts)}), qr/^perl: hi browser$/m,
    'the page shows a message from the other client');
  $perl->send_close(1000);
  like(js_wait(qq{($texts).includes('perl left') && ($texts)}), qr/perl left/, 'and its leave notice');
  navigate('about:blank');
  is($srv->stop, 0, 'chat server exits 0');
};

# ---- the feed example ----------------------------------------------------------------

subtest 'examples/feed in Chromium: EventSource' => sub {
  local $ENV{FEED_INTERVAL} = 0.3;
  my $srv = start_server(app => PAGI::Server->load_app(ROOT . '/examples/feed/app.pl'));
  ok($srv->port, 'feed server started') or return;
  ok(navigate('http://127.0.0.1:' . $srv->port . '/'), 'page loaded from our server');
  my $n = EVENTS;
  ok(js_wait("document.querySelectorAll('#events li').length >= $n"), "the page received $n events");
  my $items = js(q{Array.from(document.querySelectorAll('#events li')).map(li => li.textContent)});
  is_deeply([@{$items || []}[0 .. $n - 1]], [map { "#$_ tick $_" } 1 .. $n],
    'numbered tick events with their ids, in order');
  is(js('document.body.dataset.state'), 'open', 'the EventSource is open');
  navigate('about:blank');
  is($srv->stop, 0, 'feed server exits 0');
};

# ---- HTTP/2 over TLS: the page, an EventSource and a WebSocket -------------------------

# A page served over h2 (ALPN) opens an EventSource and a WebSocket; the server tells
# each scope's http_version and the client port it came from (one port: one TCP
# connection). Chromium sends a WebSocket over HTTP/2 (RFC 8441) on a connection that
# announced SETTINGS_ENABLE_CONNECT_PROTOCOL, which ours does.
my $H2_APP = <<'APP';
use strict;
use warnings;
use Future::AsyncAwait;

my $PAGE = <<'HTML';
<!doctype html><html><head><meta charset="utf-8"><title>h2</title></head><body data-state="loading">
<ul id="events"></ul><p id="ws"></p>
<script>
const state = {events: [], ws: []};
window.h2state = state;
const es = new EventSource('/events');
es.addEventListener('tick', (e) => { state.events.push(e.data); if (state.events.length >= 3) es.close(); });
const ws = new WebSocket('wss://' + location.host + '/ws');
ws.binaryType = 'arraybuffer';
const json = JSON.stringify({items: Array.from({length: 50}, (_, i) => ({id: i, name: 'item ' + i}))});
const rnd = new Uint8Array(1024);
crypto.getRandomValues(rnd);
const sent = ['hello over h2', json, rnd, 'y'.repeat(100000)];
let n = 0;
ws.onopen = () => sent.forEach((m) => ws.send(m));
ws.onmessage = (e) => {
  const m = sent[n++];
  if (typeof m === 'string') {
    state.ws.push(e.data.endsWith(': ' + m) ? e.data.slice(0, e.data.length - m.length) : 'MISMATCH ' + e.data.slice(0, 60));
  } else {
    const got = new Uint8Array(e.data);
    state.ws.push(got.length === m.length + 6 && m.every((b, i) => b === got[i + 6]) ? 'bytes echoed' : 'bytes MISMATCH');
  }
  if (n === sent.length) ws.close(1000);
};
ws.onerror = () => { state.ws.push('error'); };
document.body.dataset.state = 'ready';
</script></body></html>
HTML

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  my $where = "$scope->{type} http/$scope->{http_version} port $scope->{client}[1]";
  if ($scope->{type} eq 'websocket') {
    await $receive->();
    await $send->({type => 'websocket.accept'});
    my $deflate = $scope->{extensions}{'permessage-deflate'} ? 1 : 0;
    while (1) {
      my $ev = await $receive->();
      last if $ev->{type} eq 'websocket.disconnect';
      if (defined $ev->{text}) { await $send->({type => 'websocket.send', text => "$where deflate=$deflate: $ev->{text}"}) }
      else { await $send->({type => 'websocket.send', bytes => "echo: $ev->{bytes}"}) }
    }
    return;
  }
  if ($scope->{type} eq 'sse') {
    await $send->({type => 'sse.start'});
    for my $n (1 .. 3) { await $send->({type => 'sse.send', event => 'tick', data => "$where #$n"}) }
    # (the page closes it after three)
    while (1) { my $ev = await $receive->(); last if $ev->{type} eq 'sse.disconnect' }
    return;
  }
  my $body = $scope->{path} eq '/' ? $PAGE =~ s/<title>h2</<title>$where</r : 'not here';
  await $send->({type => 'http.response.start', status => $scope->{path} eq '/' ? 200 : 404,
    headers => [['content-type', 'text/html; charset=utf-8']]});
  await $send->({type => 'http.response.body', body => $body});
};
APP

subtest 'HTTP/2 over TLS in Chromium: the page, an EventSource and a WebSocket' => sub {
  plan skip_all => 'openssl is needed' unless `openssl version 2>/dev/null`;
  my $dir = File::Temp->newdir;
  system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $dir/k.pem "
    . "-out $dir/c.pem -subj /CN=localhost -days 1 2>/dev/null") == 0 or return fail('a certificate');
  open(my $fh, '>', "$dir/app.pl") or die $!;
  print {$fh} $H2_APP;
  close $fh;
  my $srv = start_server(app => PAGI::Server->load_app("$dir/app.pl"), http2 => 1,
    ssl => {cert_file => "$dir/c.pem", key_file => "$dir/k.pem"});
  ok($srv->port, 'an h2 server on TLS') or return diag $srv->log;
  ok(navigate('https://127.0.0.1:' . $srv->port . '/'), 'page loaded');
  is(js(q{performance.getEntriesByType('navigation')[0].nextHopProtocol}), 'h2', 'the page came over h2 (ALPN)');
  my ($page_port) = js('document.title') =~ /\Ahttp http\/2 port ([0-9]+)\z/;
  ok($page_port, 'the http scope: http_version 2') or diag js('document.title');
  my $events = js_wait(q{window.h2state.events.length >= 3 && window.h2state.events});
  is_deeply($events, [map { "sse http/2 port $page_port #$_" } 1 .. 3],
    'three events from an sse scope over HTTP/2, on the page\'s connection');
  my $ws = js_wait(q{window.h2state.ws.length >= 4 && window.h2state.ws});
  my ($version, $port, $deflate) = ($ws->[0] // '') =~ /\Awebsocket http\/([0-9.]+) port ([0-9]+) deflate=([01]): \z/;
  ok($version, 'the WebSocket echoed its message') or diag explain $ws;
  is($version, '2', 'a websocket scope over HTTP/2 (RFC 8441 extended CONNECT)');
  is($port, $page_port, '... on the same connection as the page and the events');
  is($deflate, 1, '... with permessage-deflate (Chromium offers it, the scope shows it)');
  is_deeply([@$ws[1 .. 3]], [$ws->[0], 'bytes echoed', $ws->[0]],
    'JSON, 1 KiB of random bytes and a 100 kB message echoed whole, with the extension on');
  navigate('about:blank');
  is($srv->stop, 0, 'the server exits 0');
};

eval { cdp('Browser.close') };
done_testing;
