use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Socket qw(AF_INET6 inet_pton);
use PAGI::Server::Protocol::PROXY;
use PAGI::Server::Protocol::Errors;

# The PROXY protocol header's parser (doc/codec.md, "The PROXY protocol header"), over
# bytes, without sockets: both versions and every family, every split point (each
# prefix is "more bytes", never an error, unless the bytes so far are already wrong),
# what follows the header left alone, and bad input (truncated, wrong signatures, bad
# lengths and TLVs, bad lines and addresses, random and mutated bytes) refused with
# its kind, never a die. One implementation: the same on both backends.

*parse = \&PAGI::Server::Protocol::PROXY::parse_proxy;

use constant V2_SIG => "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";

# A v2 header: version/command byte, family byte, the address block and TLVs
sub v2 ($cmd, $fam, $block = '', $tlvs = '') {
  my $rest = $block . $tlvs;
  return V2_SIG . pack('C C n', $cmd, $fam, length $rest) . $rest;
}
sub tlv ($type, $value) { pack('C n', $type, length $value) . $value }
sub inet4 ($src, $dst, $sp, $dp) { pack('C4 C4 n n', split(/\./, $src), split(/\./, $dst), $sp, $dp) }
sub inet6 ($src, $dst, $sp, $dp) { inet_pton(AF_INET6, $src) . inet_pton(AF_INET6, $dst) . pack('n n', $sp, $dp) }
sub unix_paths ($src, $dst) { pack('a108 a108', $src, $dst) }

sub header (%h) { +{version => 2, local => 0, ssl => 0, %h} }
my $LOCAL1 = {version => 1, local => 1, family => 'unspec', client => undef, server => undef, ssl => 0};
my $LOCAL2 = {%$LOCAL1, version => 2};

# Valid headers and what they give
my @VALID = (
  ['v1 TCP4', "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    header(version => 1, family => 'inet', client => ['192.0.2.1', 56324], server => ['198.51.100.2', 443])],
  ['v1 TCP6', "PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 1 65535\r\n",
    header(version => 1, family => 'inet6', client => ['2001:db8::1', 1], server => ['2001:db8::2', 65535])],
  ['v1 TCP6, a mapped IPv4 address', "PROXY TCP6 ::ffff:192.0.2.1 ::1 0 80\r\n",
    header(version => 1, family => 'inet6', client => ['::ffff:192.0.2.1', 0], server => ['::1', 80])],
  ['v1 UNKNOWN', "PROXY UNKNOWN\r\n", $LOCAL1],
  ['v1 UNKNOWN with addresses (ignored)', "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", $LOCAL1],
  ['v1 of 107 bytes, the longest',
    'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535' . "\r\n",
    header(version => 1, family => 'inet6', client => ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535],
      server => ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535])],
  ['v2 PROXY TCP4', v2(0x21, 0x11, inet4('192.0.2.1', '198.51.100.2', 56324, 443)),
    header(family => 'inet', client => ['192.0.2.1', 56324], server => ['198.51.100.2', 443])],
  ['v2 PROXY TCP6', v2(0x21, 0x21, inet6('2001:db8::1', '::1', 5, 8080)),
    header(family => 'inet6', client => ['2001:db8::1', 5], server => ['::1', 8080])],
  ['v2 PROXY UNIX stream', v2(0x21, 0x31, unix_paths('/run/client.sock', '/run/pagi.sock')),
    header(family => 'unix', client => ['/run/client.sock', undef], server => ['/run/pagi.sock', undef])],
  ['v2 LOCAL, no block', v2(0x20, 0x00), $LOCAL2],
  ['v2 LOCAL with a TCP4 block (ignored)', v2(0x20, 0x11, inet4('1.1.1.1', '2.2.2.2', 1, 2)), $LOCAL2],
  ['v2 LOCAL, any family and junk (ignored)', v2(0x20, 0x99, 'junk'), $LOCAL2],
  ['v2 PROXY UNSPEC (the socket\'s addresses)', v2(0x21, 0x00, 'whatever'), $LOCAL2],
  ['v2 TCP4 with TLVs skipped', v2(0x21, 0x11, inet4('10.0.0.1', '10.0.0.2', 1000, 80),
      tlv(0x01, 'h2') . tlv(0x02, 'example.com') . tlv(0x04, '') . tlv(0x05, 'unique-id' x 20) . tlv(0xEE, "\0" x 300)),
    header(family => 'inet', client => ['10.0.0.1', 1000], server => ['10.0.0.2', 80])],
  ['v2 TCP4 with PP2_TYPE_SSL, client over TLS', v2(0x21, 0x11, inet4('10.0.0.1', '10.0.0.2', 1000, 443),
      tlv(0x20, pack('C N', 0x07, 0) . tlv(0x21, 'TLSv1.3'))),
    header(family => 'inet', client => ['10.0.0.1', 1000], server => ['10.0.0.2', 443], ssl => 1)],
  ['v2 TCP4 with PP2_TYPE_SSL, client not over TLS', v2(0x21, 0x11, inet4('10.0.0.1', '10.0.0.2', 1000, 80),
      tlv(0x20, pack('C N', 0x00, 0))),
    header(family => 'inet', client => ['10.0.0.1', 1000], server => ['10.0.0.2', 80])],
);

subtest 'valid headers, alone and with what follows them' => sub {
  for my $case (@VALID) {
    my ($name, $bytes, $want) = @$case;
    is_deeply([parse($bytes)], [$want, length $bytes], $name);
    is_deeply([parse($bytes . "GET / HTTP/1.1\r\n\r\n")], [$want, length $bytes], "$name, then a request");
    is_deeply([parse($bytes . "\x16\x03\x01")], [$want, length $bytes], "$name, then a TLS record");
  }
};

subtest 'every split point: more bytes, then the same header' => sub {
  for my $case (@VALID) {
    my ($name, $bytes, $want) = @$case;
    my @bad = grep { my @r = parse(substr($bytes, 0, $_)); defined $r[0] || $r[1] } 0 .. length($bytes) - 1;
    is("@bad", '', "$name: each shorter prefix asks for more");
  }
};

# Bad input: [name, bytes, kind]
my $tcp4 = inet4('10.0.0.1', '10.0.0.2', 1, 2);
my @BAD = (
  ['plain HTTP', "GET / HTTP/1.1\r\n", 'bad_signature'],
  ['TLS', "\x16\x03\x01\x02\x00", 'bad_signature'],
  ['the HTTP/2 preface', "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 'bad_signature'],
  ['lowercase proxy', "proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n", 'bad_signature'],
  ['PROXY without its space', "PROXY\tTCP4", 'bad_signature'],
  ['v2 signature wrong in its last byte', substr(V2_SIG, 0, 11) . "\x0B\x21\x11\x00\x0C$tcp4", 'bad_signature'],
  ['v2 signature wrong early (known before it is whole)', "\x0D\x0A\x0D\x0B", 'bad_signature'],
  ['v1 TCP5', "PROXY TCP5 1.1.1.1 2.2.2.2 1 2\r\n", 'bad_line'],
  ['v1 two spaces', "PROXY TCP4  1.1.1.1 2.2.2.2 1 2\r\n", 'bad_line'],
  ['v1 missing port', "PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n", 'bad_line'],
  ['v1 LF without CR', "PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n", 'bad_line'],
  ['v1 CR inside', "PROXY TCP4\r1.1.1.1", 'bad_line'],
  ['v1 UNKNOWN without space before its rest', "PROXY UNKNOWNx\r\n", 'bad_line'],
  ['v1 trailing space', "PROXY TCP4 1.1.1.1 2.2.2.2 1 2 \r\n", 'bad_line'],
  ['v1 108 bytes without LF', 'PROXY UNKNOWN ' . ('x' x 94), 'bad_line'],
  ['v1 LF at byte 108', 'PROXY UNKNOWN ' . ('x' x 92) . "\r\n", 'bad_line'],
  ['v1 port 65536', "PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n", 'bad_address'],
  ['v1 port with a leading zero', "PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n", 'bad_address'],
  ['v1 IPv4 octet 256', "PROXY TCP4 1.1.1.256 2.2.2.2 1 2\r\n", 'bad_address'],
  ['v1 IPv4 with a leading zero', "PROXY TCP4 1.1.1.01 2.2.2.2 1 2\r\n", 'bad_address'],
  ['v1 IPv6 under TCP4', "PROXY TCP4 ::1 2.2.2.2 1 2\r\n", 'bad_address'],
  ['v1 IPv4 under TCP6', "PROXY TCP6 ::1 2.2.2.2 1 2\r\n", 'bad_address'],
  ['v1 a name, not an address', "PROXY TCP4 localhost 2.2.2.2 1 2\r\n", 'bad_address'],
  ['v1 a bad IPv6 address', "PROXY TCP6 1::2::3 ::1 1 2\r\n", 'bad_address'],
  ['v2 version 1', v2(0x11, 0x11, $tcp4), 'bad_version'],
  ['v2 version 3', v2(0x31, 0x11, $tcp4), 'bad_version'],
  ['v2 command 2', v2(0x22, 0x11, $tcp4), 'bad_version'],
  ['v2 UDP over IPv4', v2(0x21, 0x12, $tcp4), 'bad_family'],
  ['v2 UDP over IPv6', v2(0x21, 0x22, inet6('::1', '::1', 1, 2)), 'bad_family'],
  ['v2 UNIX datagram', v2(0x21, 0x32, unix_paths('a', 'b')), 'bad_family'],
  ['v2 IPv4, transport unspecified', v2(0x21, 0x10, $tcp4), 'bad_family'],
  ['v2 family 4', v2(0x21, 0x41, $tcp4), 'bad_family'],
  ['v2 TCP4 with a short block', v2(0x21, 0x11, substr($tcp4, 0, 11)), 'bad_length'],
  ['v2 TCP6 with a TCP4 block', v2(0x21, 0x21, $tcp4), 'bad_length'],
  ['v2 UNIX with a short block', v2(0x21, 0x31, 'x' x 215), 'bad_length'],
  ['v2 bad length known from the fixed part alone', V2_SIG . "\x21\x11\x00\x04", 'bad_length'],
  ['v2 a TLV of 2 bytes', v2(0x21, 0x11, $tcp4, "\x01\x00"), 'bad_tlv'],
  ['v2 a TLV longer than the header', v2(0x21, 0x11, $tcp4, "\x01\x00\x05abc"), 'bad_tlv'],
  ['v2 a TLV, then a stray byte', v2(0x21, 0x11, $tcp4, tlv(1, 'h2') . "\x00"), 'bad_tlv'],
  ['v2 PP2_TYPE_SSL shorter than its fixed part', v2(0x21, 0x11, $tcp4, tlv(0x20, "\x01\0\0")), 'bad_tlv'],
);

subtest 'bad input: its kind, as soon as it is known' => sub {
  for my $case (@BAD) {
    my ($name, $bytes, $kind) = @$case;
    my @r = parse($bytes);
    is_deeply(\@r, [{error => $kind, message => $PAGI::Server::Protocol::Errors::PROXY{$kind}[1]}, 0], $name)
      or diag explain \@r;
  }
  ok(keys %PAGI::Server::Protocol::Errors::PROXY >= 7, 'the proxy rows of errors.tsv are read');
  my %used = map { ($_->[2] => 1) } @BAD;
  is_deeply([sort keys %PAGI::Server::Protocol::Errors::PROXY], [sort keys %used], 'every kind is tested');
};

subtest 'truncated: never more than "more bytes"' => sub {
  # A header cut anywhere is incomplete (the reader closes the connection at its
  # end or deadline, "connection closed inside its PROXY protocol header")
  for my $case (@VALID) {
    my ($name, $bytes) = @$case;
    my @r = parse(substr($bytes, 0, length($bytes) - 1));
    is_deeply(\@r, [undef, 0], "$name without its last byte");
  }
  is_deeply([parse('')], [undef, 0], 'nothing');
  is_deeply([parse(V2_SIG . "\x21\x11\xFF\xFF" . ('x' x 60000))], [undef, 0], 'v2 announcing 65535 bytes, 60000 here');
};

subtest 'the longest v2 header: 16 + 65535 bytes' => sub {
  my $tlvs = tlv(0xE0, 'x' x (65535 - 12 - 3));
  my $bytes = v2(0x21, 0x11, $tcp4, $tlvs);
  is(length $bytes, 16 + 65535, 'built');
  my ($h, $n) = parse($bytes . 'rest');
  is($n, 16 + 65535, 'consumed');
  is_deeply($h->{client}, ['10.0.0.1', 1], 'read');
};

# Random and mutated bytes: the contract holds (a hash with error and message and 0,
# undef and 0, or a header with its consumed count within the input), never a die
sub contract_ok ($bytes, $what) {
  my @r = eval { parse($bytes) };
  return fail("$what: died: $@") if $@;
  my ($h, $n) = @r;
  return 1 if @r == 2 && !defined $h && $n == 0;
  return 1 if @r == 2 && ref $h eq 'HASH' && defined $h->{error} && $n == 0
    && $PAGI::Server::Protocol::Errors::PROXY{$h->{error}} && $h->{message};
  return 1 if @r == 2 && ref $h eq 'HASH' && !defined $h->{error} && $n > 0 && $n <= length $bytes
    && ($h->{local} ? !defined $h->{client} : ref $h->{client} eq 'ARRAY');
  fail("$what: broke the contract");
  diag explain [\@r, unpack('H*', $bytes)];
  return 0;
}

subtest 'fuzz: random bytes and mutated headers' => sub {
  srand(22);
  my $bad = 0;
  for (1 .. 3000) {
    my $len = int rand 80;
    my $bytes = join '', map { chr int rand 256 } 1 .. $len;
    # (half of them behind a valid signature, to reach the parsers' insides)
    $bytes = (rand() < 0.5 ? V2_SIG : 'PROXY ') . $bytes if $_ % 2;
    contract_ok($bytes, 'random') or $bad++;
    last if $bad > 5;
  }
  for my $case (@VALID) {
    my (undef, $bytes) = @$case;
    for (1 .. 200) {
      my $m = $bytes;
      substr($m, int rand length $m, 1, chr int rand 256) for 1 .. 1 + int rand 3;
      contract_ok($m, "mutated $case->[0]") or $bad++;
      contract_ok(substr($m, 0, int rand length $m), "mutated and cut $case->[0]") or $bad++;
    }
  }
  is($bad, 0, 'the contract held');
};

done_testing;
