use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# pagi.transport: the output buffer is visible to the app, and its high/drain
# callbacks fire once per cycle while a slow client reads a big streamed response.

# Built outside the async sub: Future::AsyncAwait 0.63 can lose a folded constant
# such as 'x' x 65536 after a suspended await (see README, Known issues)
my $CHUNK = 'x' x 65536;

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $t = $scope->{'pagi.transport'};
  my %seen = (high => 0, drain => 0);
  $t->on_high_water(sub { $seen{high}++ });
  $t->on_drain(sub { $seen{drain}++ });
  my $max = 0;
  await $send->({type => 'http.response.start', status => 200,
    headers => [['content-type', 'application/octet-stream']]});
  for my $i (1 .. 128) {
    await $send->({type => 'http.response.body', body => $CHUNK, more => 1});
    my $b = $t->buffered_amount;
    $max = $b if $b > $max;
  }
  await $send->({type => 'http.response.body', body => ''});
  report(high => $seen{high}, drain => $seen{drain}, max => $max,
    hwm => $t->high_water_mark, lwm => $t->low_water_mark, same => ($t == $scope->{'pagi.transport'}) ? 1 : 0);
};

my $srv = start_server(app => $app);
my $c = http_connect($srv->port, timeout => 30);
$c->send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
sleep 1;    # not reading: the server's buffer fills
my ($r) = $c->read_responses(n => 1, timeout => 30);
is($r && length $r->{body}, 128 * 65536, 'the whole 8 MiB streamed response arrives');
my ($rep) = $srv->wait_reports(1);
ok($rep->{hwm} > 0 && $rep->{lwm} > 0 && $rep->{lwm} < $rep->{hwm}, 'marks are reported, low below high');
ok($rep->{max} > 0, "buffered_amount saw queued bytes ($rep->{max})");
ok($rep->{high} >= 1, "on_high_water fired ($rep->{high})");
ok($rep->{drain} >= 1 && $rep->{drain} <= $rep->{high}, "on_drain fired once per cycle ($rep->{drain})");
is($srv->stop, 0, 'server exits 0');
done_testing;
