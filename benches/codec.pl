#!/usr/bin/env perl
# The HTTP/1.1 codec's speed: parse_request on a typical browser GET (8 headers) and a
# minimal wrk GET, XS vs PP vs HTTP::Parser::XS (filling a fresh %env, as Plack
# servers do), and serialize_response XS vs PP.
#
#   perl Makefile.PL && make && perl benches/codec.pl [seconds per case, default 2]
use v5.32;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Benchmark qw(cmpthese timethese);
use PAGI::Server::Protocol::HTTP1::PP;
use PAGI::Server::Protocol::HTTP1::XS;

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
