use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use IO::Async::Loop;
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Server;

# What an embedding program or an operator coming from upstream PAGI::Server sees
# (issue 21): Unix socket scopes and listener specs, the checks new makes, and the
# other items below, each on the backend PAGI_SERVER_BACKEND names.

my $dir = File::Temp->newdir;
my $loop = IO::Async::Loop->new;

# An application that answers every request with what its scope says
my %seen;
my $scope_app = sub ($scope, $receive, $send) {
  return Future->done if $scope->{type} eq 'lifespan';
  $seen{$scope->{path}} = {%$scope};
  return read_body($receive)->then(sub { respond($send, 200, "path $scope->{path}") });
};

# A request made by curl, run from the loop (so that the server in this process serves it)
sub curl (@args) {
  my ($out) = $loop->run_process(command => ['curl', '-s', '-i', @args], capture => ['stdout'])->get;
  return $out;
}

subtest 'a Unix socket: no client key in its scopes; the file goes with shutdown; no port' => sub {
  my $sock = "$dir/only.sock";
  my $server = PAGI::Server->new(app => $scope_app, socket => $sock, quiet => 1, access_log => undef);
  is($server->port, undef, 'port: undef before listening (no TCP listener)');
  $loop->add($server);
  $server->listen->get;
  is($server->port, undef, '... and while listening');
  like(curl('--unix-socket', $sock, 'http://x/over-unix'), qr/\r\n\r\npath \/over-unix\z/, 'served on the socket');
  my $scope = $seen{'/over-unix'};
  ok($scope && !exists $scope->{client}, 'the scope has no client key') or diag explain $scope;
  is_deeply($scope->{server}, [$sock, undef], '... and server => [PATH, undef]');
  $server->shutdown->get;
  ok(!-e $sock, 'shutdown removed the socket file (before the server left its loop)');
  $loop->remove($server);

  # TCP next to it: the TCP scope keeps its client
  $server = PAGI::Server->new(app => $scope_app, quiet => 1, access_log => undef,
    listen => [{socket => "$dir/both.sock"}, {host => '127.0.0.1', port => 0}]);
  $loop->add($server);
  $server->listen->get;
  my $port = $server->port;
  ok($port, "port: the TCP listener's ($port)");
  curl("http://127.0.0.1:$port/over-tcp");
  is($seen{'/over-tcp'}{client}[0], '127.0.0.1', 'a TCP scope has its client');
  $server->shutdown->get;
  $loop->remove($server);
};

subtest 'listen specs: refused as upstream words it' => sub {
  my $app = sub { Future->done };
  for my $case (
    [[], qr/'listen' must be a non-empty arrayref/],
    [[{socket => "$dir/x.sock", host => '127.0.0.1'}], qr/Cannot specify both 'socket' and 'host' in a listen spec/],
    [[{socket => "$dir/x.sock", port => 80}], qr/Cannot specify both 'socket' and 'port' in a listen spec/],
    [[{host => '127.0.0.1'}], qr/TCP listen spec requires both 'host' and 'port'/],
    [[[1]], qr/Each listen spec must be a hashref/],
  ) {
    my ($listen, $re) = @$case;
    ok(!eval { PAGI::Server->new(app => $app, listen => $listen); 1 }, 'refused: ' . ($re =~ s/\(\?\^:(.*)\)/$1/r));
    like($@, $re, '... in those words');
  }
};

subtest 'new checks loop_type and the TLS files at once' => sub {
  my $app = sub { Future->done };
  ok(!eval { PAGI::Server->new(app => $app, loop_type => 'Select"; rm -rf x') ; 1 }, 'a loop_type that is no loop name');
  like($@, qr/\APAGI::Server->new: Invalid loop_type 'Select"; rm -rf x'/, '... dies in new, in upstream\'s words');
  ok(!eval { PAGI::Server->new(app => $app, loop_type => 'NoSuchLoopHere'); 1 }, 'a loop that is not installed');
  like($@, qr/IO::Async::Loop::NoSuchLoopHere, which is not installed; installed loops: .*Select/,
    '... dies in new, naming the installed loops');
  ok(eval { PAGI::Server->new(app => $app, loop_type => 'Select'); 1 }, 'an installed loop is taken') or diag $@;

  my $pem = "$dir/some.pem";
  open(my $fh, '>', $pem) or die $!;
  close $fh;
  for my $case ([{cert_file => "$dir/gone.pem"}, qr/SSL certificate file not found: \Q$dir\E\/gone\.pem/],
    [{cert_file => $pem, key_file => "$dir/gone.key"}, qr/SSL key file not found: \Q$dir\E\/gone\.key/],
    [{ca_file => "$dir/gone-ca.pem"}, qr/SSL CA file not found: \Q$dir\E\/gone-ca\.pem/],
    [{cert_file => $pem}, qr/ssl_cert and ssl_key go together/]) {
    my ($ssl, $re) = @$case;
    my $what = join ', ', map { "$_ => " . ($ssl->{$_} eq $pem ? 'a file' : 'a missing file') } sort keys %$ssl;
    ok(!eval { PAGI::Server->new(app => $app, ssl => $ssl); 1 }, "ssl => {$what}: new dies");
    like($@, $re, '... saying what is wrong');
  }
};

done_testing;
