use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use PAGI::Test::Server qw(start_server http_connect wait_for);
use PAGI::Test::Load qw(worker_app);

# max_connections: connections beyond the limit get a clean 503 (the wire-error
# response: text/plain, Content-Length, Connection: close, Retry-After) and are closed; the
# connections already open keep working.

sub get ($c, $path) {
  $c->send("GET $path HTTP/1.1\r\nHost: x\r\n\r\n");
  my ($r) = $c->read_responses(timeout => 5);
  return $r;
}

for my $workers (0, 1) {
  subtest "max_connections => 3" . ($workers ? ' (one worker)' : '') => sub {
    my $srv = start_server(app => worker_app(), max_connections => 3, workers => $workers);
    my @c = map { http_connect($srv->port) } 1 .. 3;
    my $i = 0;
    for my $c (@c) {
      $i++;
      my $r = get($c, "/r/$i");
      is($r && $r->{body}, "ok /r/$i\n", "connection $i served");
    }
    my $extra = http_connect($srv->port);
    $extra->send("GET /r/4 HTTP/1.1\r\nHost: x\r\n\r\n");
    my ($r) = $extra->read_responses(timeout => 5);
    is($r && $r->{status}, 503, 'the fourth connection gets 503');
    is($r && $r->{reason}, 'Service Unavailable', 'reason phrase');
    is($r && lc $r->{h}{connection}, 'close', 'Connection: close');
    like($r && $r->{h}{'content-type'}, qr{\Atext/plain}, 'text/plain');
    is($r && $r->{framing}, 'length', 'with a Content-Length');
    is($r && $r->{h}{'retry-after'}, 5, 'Retry-After: 5 (come back soon)');
    ok($extra->wait_closed(5), 'and the server closes it');
    $i = 0;
    for my $c (@c) {
      $i++;
      my $r2 = get($c, "/r/1$i");
      is($r2 && $r2->{body}, "ok /r/1$i\n", "connection $i still works");
    }
    $c[0]->close;
    # The freed slot is counted once the server has seen the close
    my $ok;
    wait_for(sub {
      my $n = http_connect($srv->port);
      my $r3 = get($n, '/r/99');
      $ok = $r3 && $r3->{status} == 200;
    }, 5);
    ok($ok, 'after one closes, a new connection is served');
    like($srv->log, qr/\[warn\] (?:\[worker \d+ pid \d+\] )?127\.0\.0\.1:\d+: 503 Connection rejected: at capacity \(3\/3\)/,
      'the 503 is logged as a warning, in upstream\'s words (open/max_connections)');
    is($srv->stop, 0, 'exits 0');
  };
}

done_testing;
