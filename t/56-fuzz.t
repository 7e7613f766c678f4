use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Random damage to valid requests (HTTP, chunked, WebSocket upgrades, SSE, 100-continue,
# several pipelined), sent whole or a byte at a time, sometimes half-closed: the server
# answers each with a proper status or closes, never logs an error (a crash of ours
# would be an "application error" or a dead process), and still serves afterwards.
# The seed is fixed, so a failure repeats; PAGI_TEST_FUZZ=N runs N cases (default 400).

my $CASES = $ENV{PAGI_TEST_FUZZ} || 400;

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  if ($scope->{type} eq 'websocket') {
    await $receive->();
    await $send->({type => 'websocket.accept'});
    while (1) {
      my $ev = await $receive->();
      last if $ev->{type} ne 'websocket.receive';
      await $send->({type => 'websocket.send', text => 'echo'});
    }
    return;
  }
  if ($scope->{type} eq 'sse') {
    await $receive->();
    await $send->({type => 'sse.start'});
    return await $send->({type => 'sse.send', data => 'one'});
  }
  my $body = await read_body($receive);
  await respond($send, 200, 'got ' . length $body, ['content-type', 'text/plain']);
};

my @BASE = (
  "GET /a?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: fuzz\r\n\r\n",
  "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
  "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
  "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    . "\x81\x82abcd" . ("\x15\x0a"),
  "GET /e HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
  "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
);
my @BYTES = ("\r", "\n", "\0", ' ', ':', "\t", "\x7f", "\xff", 'a', '0', '-', ',', ';', '%', '?');
my %ALLOWED = map { $_ => 1 } qw(100 101 200 400 413 414 426 431 501 505);

my $srv = start_server(app => $app, header_timeout => 2, timeout => 2, keepalive_timeout => 2);
ok($srv->port, 'server started') or BAIL_OUT('no server: ' . $srv->log);

srand(20261127);
my (%status, @odd);
for my $i (1 .. $CASES) {
  my $req = join '', map { $BASE[rand @BASE] } 0 .. int rand 3;
  for (1 .. int rand 6) {
    my $pos = int rand(length($req) + 1);
    my $op = int rand 4;
    if    ($op == 0) { substr($req, $pos, 1, '') }
    elsif ($op == 1) { substr($req, $pos, 0, $BYTES[rand @BYTES]) }
    elsif ($op == 2) { substr($req, $pos, 1, $BYTES[rand @BYTES]) }
    else             { substr($req, $pos, 0, substr($req, int rand length $req, int rand 20)) }
  }
  my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $srv->port, Timeout => 5)
    or do { fail("case $i: cannot connect: $@"); last };
  my $bytewise = rand() < 0.2;
  my $half     = rand() < 0.3;
  local $SIG{PIPE} = 'IGNORE';
  if ($bytewise) { syswrite($s, $_) // last for split //, $req } else { syswrite($s, $req) }
  shutdown($s, 1) if $half;
  $s->blocking(0);
  my ($buf, $t0) = ('', time);
  while (time - $t0 < 0.25) {
    my $n = sysread($s, $buf, 65536, length $buf);
    last if defined $n && $n == 0;
    sleep 0.005 unless $n;
  }
  close $s;
  for my $st ($buf =~ m{(?:\A|\n)HTTP/1\.1 ([0-9]{3}) }g) {
    $status{$st}++;
    push @odd, "case $i: status $st for " . ($req =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ger)
      unless $ALLOWED{$st};
  }
  push @odd, "case $i: not HTTP: " . substr($buf, 0, 40) if length $buf && $buf !~ m{\AHTTP/1\.1 };
}
note 'statuses: ' . join ' ', map { "$_ x$status{$_}" } sort keys %status;
is_deeply(\@odd, [], "$CASES damaged requests: each answered with an expected status, or closed");
ok($status{400} && $status{200}, 'both rejections and answers happened (the damage was varied)');

my ($r) = http_exchange($srv->port, "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
is($r->[0] && $r->[0]{status}, 200, 'the server still serves a plain request');
my @errors = grep { /\[error\]|PAGI-TEST-CHILD-DIED/ } split /\n/, $srv->log;
is_deeply(\@errors, [], 'no error in the server log');
is($srv->stop, 0, 'the server exits 0');

done_testing;
