#!/usr/bin/env perl
# The codecs' speed. HTTP/1.1: parse_request on a typical browser GET (8 headers) and a
# minimal wrk GET, XS vs PP vs HTTP::Parser::XS (filling a fresh %env, as Plack
# servers do); serialize_response and check_headers XS vs PP. WebSocket: parse_frame
# (with its unmasking) of a 16 KiB masked frame and of a small one, mask_payload,
# build_frame, and utf8_check on text of several kinds, XS vs PP.
#
#   perl Makefile.PL && make && perl benches/codec.pl [seconds per case, default 2]
use v5.32;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Benchmark qw(cmpthese timethese);
use PAGI::Server::Protocol::HTTP1::PP;
use PAGI::Server::Protocol::HTTP1::XS;
use PAGI::Server::Protocol::WebSocket::PP;
use PAGI::Server::Protocol::WebSocket::XS;

my $have_hpxs = eval { require HTTP::Parser::XS; 1 };
my $secs = -abs($ARGV[0] // 2);

my $browser = join '', map "$_\r\n",
  'GET /articles/2024/rust-and-perl.html?utm_source=feed HTTP/1.1',
  'Host: www.example.org',
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8',
  'Accept-Language: en-GB,en;q=0.7,fr;q=0.3',
  'Accept-Encoding: gzip, deflate, br, zstd',
  'Referer: https://www.example.org/articles/',
  'Connection: keep-alive',
  'Cookie: session=4f2a9c1e8b7d6a5f; theme=dark; consent=yes',
  '';
my $wrk = "GET / HTTP/1.1\r\nHost: localhost:5000\r\n\r\n";

my @limits = (16384, 100, 8192);
printf "perl %s, %s; browser GET %d bytes, wrk GET %d bytes\n\n", $^V,
  ($have_hpxs ? "HTTP::Parser::XS $HTTP::Parser::XS::VERSION" : 'no HTTP::Parser::XS'),
  length $browser, length $wrk;

for my $case (['browser GET (8 headers)', $browser], ['wrk GET', $wrk]) {
  my ($name, $buf) = @$case;
  # Sanity: both backends agree, HTTP::Parser::XS accepts it
  my ($x) = PAGI::Server::Protocol::HTTP1::XS::parse_request($buf, @limits);
  my ($p) = PAGI::Server::Protocol::HTTP1::PP::parse_request($buf, @limits);
  die "XS and PP disagree on $name\n" unless $x->{path} eq $p->{path} && @{$x->{headers}} == @{$p->{headers}};
  say "== parse_request: $name";
  cmpthese(timethese($secs, {
    XS => sub { my ($r, $n) = PAGI::Server::Protocol::HTTP1::XS::parse_request($buf, @limits) },
    PP => sub { my ($r, $n) = PAGI::Server::Protocol::HTTP1::PP::parse_request($buf, @limits) },
    ($have_hpxs ? ('HTTP::Parser::XS' => sub { my $n = HTTP::Parser::XS::parse_http_request($buf, my $env = {}) }) : ()),
  }, 'none'));
  say '';
}

my @headers = (['Content-Type', 'text/plain; charset=utf-8'], ['Cache-Control', 'no-cache'],
  ['X-Request-Id', 'b7c3f0e2-41d9-4b8a-9e57-2f6c1a0d3e88']);
my $body = 'Hello, world!';
say '== serialize_response: 200, 3 app headers + Date + Server + Content-Length, 13-byte body';
cmpthese(timethese($secs, {
  XS => sub { my ($b, $m, $c) = PAGI::Server::Protocol::HTTP1::XS::serialize_response(200, \@headers, 0, $body) },
  PP => sub { my ($b, $m, $c) = PAGI::Server::Protocol::HTTP1::PP::serialize_response(200, \@headers, 0, $body) },
}, 'none'));
say '';

say '== check_headers: the same 3 app headers (every http.response.start)';
cmpthese(timethese($secs, {
  XS => sub { my $e = PAGI::Server::Protocol::HTTP1::XS::check_headers(\@headers) },
  PP => sub { my $e = PAGI::Server::Protocol::HTTP1::PP::check_headers(\@headers) },
}, 'none'));
say '';

# WebSocket: client frames as a browser sends them (masked)
my %WS = (xs => 'PAGI::Server::Protocol::WebSocket::XS', pp => 'PAGI::Server::Protocol::WebSocket::PP');
my $key = "\x37\xfa\x21\x3d";
sub client_frame {
  my ($opcode, $payload) = @_;
  my $len = length $payload;
  my $head = $len < 126 ? pack('CC', 0x80 | $opcode, 0x80 | $len)
    : $len < 65536 ? pack('CCn', 0x80 | $opcode, 0xfe, $len)
    : pack('CCNN', 0x80 | $opcode, 0xff, 0, $len);
  return $head . $key . PAGI::Server::Protocol::WebSocket::PP::mask_payload($payload, $key);
}
my $bin16k = join '', map { chr(($_ * 7) % 256) } 1 .. 16384;
my $frame16k = client_frame(2, $bin16k);
my $frame32 = client_frame(1, 'm' x 32);
for my $impl (values %WS) {
  my ($f, $n) = $impl->can('parse_frame')->($frame16k, 1 << 20);
  die "$impl: parse_frame of 16 KiB\n" unless $n == length $frame16k && $f->[2] eq $bin16k;
}
for my $case (['16 KiB masked binary frame', $frame16k], ['32-byte masked text frame', $frame32]) {
  my ($name, $frame) = @$case;
  say "== parse_frame (and unmask): $name";
  cmpthese(timethese($secs, {
    map { my $f = $WS{$_}->can('parse_frame'); (uc($_) => sub { my ($r, $n) = $f->($frame, 1 << 20) }) } keys %WS
  }, 'none'));
  say '';
}
say '== mask_payload: 16 KiB';
cmpthese(timethese($secs, {
  map { my $f = $WS{$_}->can('mask_payload'); (uc($_) => sub { my $m = $f->($bin16k, $key) }) } keys %WS
}, 'none'));
say '';
say '== build_frame: 32-byte text message';
my $msg32 = 'm' x 32;
cmpthese(timethese($secs, {
  map { my $f = $WS{$_}->can('build_frame'); (uc($_) => sub { my $b = $f->(1, $msg32, 1) }) } keys %WS
}, 'none'));
say '';

# Text of several kinds, 16 KiB each (and a short chat message)
my %text = (
  'ASCII, 16 KiB' => 'The quick brown fox jumps over the lazy dog. ' x 365,
  'mostly ASCII with accents, 16 KiB' => "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e, na\xc3\xafve fa\xc3\xa7ade. " x 330,
  'Greek and CJK (2-3 byte), 16 KiB' => "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e " x 780,
  'emoji (4 byte), 16 KiB' => "\xf0\x9f\x98\x80\xf0\x9f\x8e\x89" x 2048,
  'chat message, 40 bytes' => "hello \xf0\x9f\x91\x8b, see you at caf\xc3\xa9 at 5?  ",
);
for my $name (sort keys %text) {
  my $t = $text{$name};
  die "utf8_check disagrees on $name\n"
    unless PAGI::Server::Protocol::WebSocket::XS::utf8_check($t) == 1 && PAGI::Server::Protocol::WebSocket::PP::utf8_check($t) == 1;
  say "== utf8_check: $name (" . length($t) . ' bytes)';
  cmpthese(timethese($secs, {
    map { my $f = $WS{$_}->can('utf8_check'); (uc($_) => sub { my $ok = $f->($t) }) } keys %WS
  }, 'none'));
  say '';
}
