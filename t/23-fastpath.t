use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# The fast path (start, then one final body: one serialize, one write) and the general
# path (start, then the body in several sends) must put the same bytes on the wire,
# Date aside, for every status and request kind. At log level debug each response
# logs which path it took.

# /fast/STATUS or /general/STATUS/SPLIT; the app always sets Content-Length
my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my (undef, $path, $status, $split) = split m{/}, $scope->{path};
  my $body = "body for $status\n" x 3;
  my @headers = (['Content-Type', 'text/plain'], ['X-Path', $path], ['content-length', length $body]);
  await $send->({type => 'http.response.start', status => $status, headers => \@headers});
  if ($path eq 'fast') {
    await $send->({type => 'http.response.body', body => $body});
    return;
  }
  my @parts = $split eq 'half'  ? (substr($body, 0, 10), substr($body, 10))
            : $split eq 'empty' ? ('', $body)
            : $split eq 'last'  ? ($body, '')
            :                     (map { substr($body, $_ * 5, 5) } 0 .. int((length($body) - 1) / 5));
  my $last = pop @parts;
  for my $p (@parts) { await $send->({type => 'http.response.body', body => $p, more => 1}) }
  await $send->({type => 'http.response.body', body => $last, more => 0});
};

my $srv = start_server(app => $app, log_level => 'debug');
ok($srv->port, 'server started') or BAIL_OUT($srv->log);

sub undated ($raw) { $raw =~ s/\r\nDate: [^\r\n]*\r\n/\r\nDate: X\r\n/r }

my @requests = (
  ['GET', '1.1', [], 'HTTP/1.1 GET'],
  ['GET', '1.1', ['Connection: close'], 'HTTP/1.1 GET, Connection: close'],
  ['GET', '1.0', ['Connection: keep-alive'], 'HTTP/1.0 GET, keep-alive'],
  ['GET', '1.0', [], 'HTTP/1.0 GET'],
  ['HEAD', '1.1', [], 'HEAD'],
  ['POST', '1.1', ['Content-Length: 3'], 'POST with a body', 'abc'],
);

my ($fast_logged, $general_logged) = (0, 0);
for my $status (200, 201, 204, 304, 404, 500) {
  for my $rq (@requests) {
    my ($method, $version, $headers, $name, $body) = @$rq;
    my $extra = join '', map { "$_\r\n" } @$headers;
    my $req = sub ($target) { "$method $target HTTP/$version\r\nHost: t\r\n$extra\r\n" . ($body // '') };
    my ($fast) = http_exchange($srv->port, $req->("/fast/$status"), methods => [$method]);
    ok($fast->[0], "$status, $name: fast path response") or next;
    like($fast->[0]{raw}, qr/\AHTTP\/1\.1 $status /, "$status, $name: fast path status line");
    for my $split (qw(half empty last fives)) {
      my ($gen) = http_exchange($srv->port, $req->("/general/$status/$split"), methods => [$method]);
      ok($gen->[0], "$status, $name, general ($split): response") or next;
      (my $g = undated($gen->[0]{raw})) =~ s/X-Path: general/X-Path: fast/;
      is($g, undated($fast->[0]{raw}), "$status, $name: general path ($split) = fast path, byte for byte");
    }
    $fast_logged++;
    $general_logged += 4;
  }
}

# Which path each response took, from the debug log
ok(wait_for(sub { (() = $srv->log =~ /path$/mg) >= $fast_logged + $general_logged }),
  'the debug log has a path line for every response');
my $log = $srv->log;
for my $status (200, 201, 204, 304, 404, 500) {
  my $fast = () = $log =~ /\[debug\] response $status: fast path$/mg;
  my $general = () = $log =~ /\[debug\] response $status: general path$/mg;
  is($fast, scalar @requests, "status $status: one 'fast path' debug line per fast request");
  is($general, 4 * @requests, "status $status: one 'general path' debug line per general request");
}

is($srv->stop, 0, 'server exits 0 on SIGTERM');

# At the default level (info) nothing is logged per response
my $quiet = start_server(app => $app);
my ($r) = http_exchange($quiet->port, "GET /fast/200 HTTP/1.1\r\nHost: t\r\n\r\n");
is($r->[0]{status}, 200, 'info level: served');
is_deeply([$quiet->log_grep(qr/fast path|general path/)], [], 'info level: no per-response path lines');
is($quiet->stop, 0, 'second server exits 0');

done_testing;
