use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use PAGI::Server::Proxy;
use PAGI::Server::Config qw(:fields);

# The trusted proxies (forwarded_allow_ips) and the rule that turns a trusted peer's
# forwarded headers into the scope's client and scheme (README "Behind a proxy"),
# without sockets: scope hashes in, scope hashes out. t/47 serves them.

sub set_of ($spec) {
  my ($set, $err) = PAGI::Server::Proxy::trusted_set($spec);
  die "trusted_set($spec): $err\n" if $err;
  return $set;
}

subtest 'forwarded_allow_ips: addresses, networks, unix, *' => sub {
  my $set = set_of('127.0.0.1, ::1 ,unix,10.0.0.0/8,2001:db8::/32, 192.0.2.7/32,::ffff:198.51.100.0/120');
  my %want = (
    '127.0.0.1' => 1, '127.0.0.2' => 0, '::1' => 1, '::2' => 0, '10.1.2.3' => 1, '11.0.0.1' => 0,
    '2001:db8:ffff::1' => 1, '2001:db9::1' => 0, '192.0.2.7' => 1, '192.0.2.8' => 0,
    '::ffff:127.0.0.1' => 1, '::ffff:10.9.9.9' => 1, '198.51.100.77' => 1, '198.51.101.1' => 0,
    'fe80::1%eth0' => 0, 'localhost' => 0, '' => 0, '1.2.3' => 0,
  );
  for my $host (sort keys %want) {
    is(PAGI::Server::Proxy::trusts($set, $host) ? 1 : 0, $want{$host}, "'$host'");
  }
  is(PAGI::Server::Proxy::trusts($set, undef), 1, 'a Unix socket peer (unix)');
  is(PAGI::Server::Proxy::trusts(set_of('127.0.0.1'), undef), 0, 'not without unix');
  my $all = set_of('*');
  ok(PAGI::Server::Proxy::trusts($all, $_), "* trusts '" . ($_ // 'unix') . "'") for '8.8.8.8', '::', undef;
  ok(PAGI::Server::Proxy::trusts(set_of(['10.0.0.1', 'UNIX']), undef), 'an array, UNIX in any case');
  ok(!PAGI::Server::Proxy::trusts(set_of(''), '127.0.0.1'), 'an empty list trusts nobody');
  ok(PAGI::Server::Proxy::trusts(set_of('0.0.0.0/0'), '203.0.113.9'), '0.0.0.0/0');
  ok(!PAGI::Server::Proxy::trusts(set_of('0.0.0.0/0'), '2001:db8::1'), '... is IPv4 only');
  for my $bad ('localhost', '10.0.0.0/33', '::/129', '10.0.0.1/8', '1.2.3.4.5', '10.0.0.0/-1', 'unix:/x', {}) {
    my (undef, $err) = PAGI::Server::Proxy::trusted_set($bad);
    ok($err, "'$bad' is refused") or next;
    note $err;
  }
};

subtest 'the option: checked, FORWARDED_ALLOW_IPS, the default' => sub {
  my $app = sub { };
  local $ENV{FORWARDED_ALLOW_IPS};
  delete $ENV{FORWARDED_ALLOW_IPS};
  my $cfg = PAGI::Server::Config->new({app => $app});
  is($cfg->[PROXY_HEADERS], 0, 'proxy_headers is off by default');
  is($cfg->[PROXY_PROTOCOL], 0, 'proxy_protocol too');
  is($cfg->[FORWARDED_ALLOW_IPS], '127.0.0.1,::1,unix', 'forwarded_allow_ips: loopback and Unix sockets');
  ok(PAGI::Server::Proxy::trusts($cfg->[FORWARDED_TRUST], '::1'), 'derived: the set');
  $ENV{FORWARDED_ALLOW_IPS} = '10.0.0.0/8';
  $cfg = PAGI::Server::Config->new({app => $app});
  is($cfg->[FORWARDED_ALLOW_IPS], '10.0.0.0/8', 'FORWARDED_ALLOW_IPS when the option is not given (uvicorn)');
  ok(!PAGI::Server::Proxy::trusts($cfg->[FORWARDED_TRUST], '127.0.0.1'), '... in place of the default');
  $cfg = PAGI::Server::Config->new({app => $app, forwarded_allow_ips => '*'});
  is($cfg->[FORWARDED_ALLOW_IPS], '*', 'the option wins over it');
  $ENV{FORWARDED_ALLOW_IPS} = 'nonsense';
  eval { PAGI::Server::Config->new({app => $app}) };
  like($@, qr/FORWARDED_ALLOW_IPS \(the environment's\) 'nonsense' is not/, 'a bad FORWARDED_ALLOW_IPS is an error');
  delete $ENV{FORWARDED_ALLOW_IPS};
  eval { PAGI::Server::Config->new({app => $app, forwarded_allow_ips => '10.0.0.1/8'}) };
  like($@, qr{forwarded_allow_ips '10\.0\.0\.1/8' has bits set after its prefix \(the network is 10\.0\.0\.0/8\)},
    'a bad option names itself');
};

# The scope of a request with these headers, after the rule, from a trusted peer
my $PEER = ['127.0.0.1', 40000];
sub forward ($set, @headers) {
  my $scope = {type => 'http', scheme => 'http', client => $PEER, headers => [@headers]};
  PAGI::Server::Proxy::forwarded(ref $set ? $set : set_of($set), $scope);
  return [$scope->{client}, $scope->{scheme}];
}
sub h ($name, $value) { [$name, $value] }

subtest 'X-Forwarded-For: walked from the right' => sub {
  my $local = '127.0.0.1,10.0.0.0/8';
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9')), [['203.0.113.9', 0], 'http'], 'one address');
  is_deeply(forward($local, h('x-forwarded-for', '198.51.100.1, 203.0.113.9, 10.0.0.5')),
    [['203.0.113.9', 0], 'http'], 'the right-most address not trusted, past the trusted proxies');
  is_deeply(forward($local, h('x-forwarded-for', '6.6.6.6, 203.0.113.9')), [['203.0.113.9', 0], 'http'],
    'a spoofed left part is not reached');
  is_deeply(forward($local, h('x-forwarded-for', '10.0.0.9, 10.0.0.5')), [['10.0.0.9', 0], 'http'],
    'all trusted: the left-most (uvicorn)');
  is_deeply(forward('*', h('x-forwarded-for', '198.51.100.1, 203.0.113.9, 10.0.0.5')),
    [['198.51.100.1', 0], 'http'], '*: the left-most');
  is_deeply(forward($local, h('x-forwarded-for', '198.51.100.1'), h('x-forwarded-for', '203.0.113.9')),
    [['203.0.113.9', 0], 'http'], 'several fields are one list, in order');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9:5555')), [['203.0.113.9', 5555], 'http'],
    'an IPv4 address with a port');
  is_deeply(forward($local, h('x-forwarded-for', '2001:db8::7')), [['2001:db8::7', 0], 'http'], 'IPv6, bare');
  is_deeply(forward($local, h('x-forwarded-for', '[2001:db8::7]:443')), [['2001:db8::7', 443], 'http'],
    'IPv6 in brackets, a port');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9,, ')), [['203.0.113.9', 0], 'http'],
    'empty entries are skipped');
  is_deeply(forward($local, h('x-forwarded-for', '')), [$PEER, 'http'], 'an empty header: the peer stays');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9, unknown')), [$PEER, 'http'],
    'the chosen entry is no address: the peer stays (the walk does not go past it)');
  is_deeply(forward($local, h('x-forwarded-for', '<script>')), [$PEER, 'http'], 'garbage: the peer stays');
};

subtest 'X-Forwarded-Proto' => sub {
  my $local = '127.0.0.1,10.0.0.0/8';
  is_deeply(forward($local, h('x-forwarded-proto', 'https'))->[1], 'https', 'https');
  is_deeply(forward($local, h('x-forwarded-proto', 'HTTPS'))->[1], 'https', 'any case');
  is_deeply(forward($local, h('x-forwarded-proto', 'wss'))->[1], 'https', 'wss is https in an http scope');
  is_deeply(forward($local, h('x-forwarded-proto', 'ws'))->[1], 'http', 'ws is http');
  is_deeply(forward($local, h('x-forwarded-proto', 'gopher'))->[1], 'http', 'anything else: left alone');
  is_deeply(forward($local, h('x-forwarded-proto', 'http, https'))->[1], 'https',
    'several, no X-Forwarded-For: the right-most');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9, 10.0.0.5'), h('x-forwarded-proto', 'https, http')),
    [['203.0.113.9', 0], 'https'], 'several: as far from the right as the X-Forwarded-For walk went');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9, 10.0.0.6, 10.0.0.5'), h('x-forwarded-proto', 'https')),
    [['203.0.113.9', 0], 'https'], 'one value goes with any walk');
};

subtest 'Forwarded (RFC 7239)' => sub {
  my $local = '127.0.0.1,10.0.0.0/8';
  is_deeply(forward($local, h('forwarded', 'for=192.0.2.60;proto=https;by=203.0.113.43')),
    [['192.0.2.60', 0], 'https'], 'for and proto');
  is_deeply(forward($local, h('forwarded', 'For="[2001:db8:cafe::17]:4711"')), [['2001:db8:cafe::17', 4711], 'http'],
    'a quoted IPv6 address with a port, names in any case');
  is_deeply(forward($local, h('forwarded', 'for="[::1]:8000";proto=http, for=10.0.0.5;proto=https')),
    [['::1', 8000], 'http'], 'elements walked from the right; the chosen one\'s proto');
  is_deeply(forward($local, h('forwarded', 'for=6.6.6.6'), h('forwarded', 'for=198.51.100.3;proto=https')),
    [['198.51.100.3', 0], 'https'], 'several fields: one list');
  is_deeply(forward($local, h('forwarded', 'for=198.51.100.3, by=10.0.0.1')), [$PEER, 'http'],
    'an element without for= stops the walk (the proxy named no client)');
  is_deeply(forward($local, h('forwarded', 'for=unknown;proto=https')), [$PEER, 'https'],
    'for=unknown: the peer stays, proto counts');
  is_deeply(forward($local, h('forwarded', 'for="_hidden:_port"')), [$PEER, 'http'], 'an obfuscated node');
  is_deeply(forward($local, h('forwarded', 'for="203.0.113.1:_abc"')), [['203.0.113.1', 0], 'http'],
    'an obfuscated port is 0');
  is_deeply(forward($local, h('forwarded', 'for=192.0.2.60;proto')), [$PEER, 'http'], 'a bad value: ignored');
  is_deeply(forward($local, h('forwarded', 'for="192.0.2.60')), [$PEER, 'http'], 'an unclosed quote: ignored');
  is_deeply(forward($local, h('forwarded', ' , ;for=192.0.2.60 ;; ')), [['192.0.2.60', 0], 'http'],
    'empty elements and pairs, spaces');
  is_deeply(forward($local, h('x-forwarded-for', '203.0.113.9'), h('forwarded', 'for=6.6.6.6;proto=https')),
    [['203.0.113.9', 0], 'http'], 'X-Forwarded-For there: Forwarded is not read');
  is_deeply(forward($local, h('x-forwarded-proto', 'https'), h('forwarded', 'for=192.0.2.1;proto=http')),
    [['192.0.2.1', 0], 'https'], 'X-Forwarded-Proto there: it gives the scheme, Forwarded the client');
};

subtest 'nothing forwarded: the scope is left as it was' => sub {
  my $scope = {type => 'http', scheme => 'https', client => $PEER, headers => [['host', 'x']]};
  PAGI::Server::Proxy::forwarded(set_of('127.0.0.1'), $scope);
  is_deeply($scope, {type => 'http', scheme => 'https', client => $PEER, headers => [['host', 'x']]}, 'unchanged');
};

done_testing;
