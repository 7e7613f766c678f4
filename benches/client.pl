#!/usr/bin/env perl
# A small HTTP/1.1 client for benches/run (blocking sockets, 127.0.0.1 only).
#
#   client.pl keepalive --port N --requests K   K sequential requests on one connection
#                                               (--body B: POSTs with a B-byte body;
#                                               --header 'K: V' repeatable;
#                                               --depth D: D requests per write, pipelined)
#   client.pl churn --port N --requests K       K connections, one request each with
#                                               Connection: close, read to the server's close
#   client.pl idle --port N --conns K           K connections, one request on each, then
#                                               "ready K" on stdout; they stay open until
#                                               stdin is closed
#
# Exits non-zero on a connect error, a non-200 response or a short read.
use strict;
use warnings;
use Getopt::Long qw(GetOptionsFromArray);
use IO::Socket::IP;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my $mode = shift // '';
my %o = (host => '127.0.0.1', port => 0, requests => 1000, conns => 1000, path => '/', body => 0,
  depth => 1, header => []);
GetOptionsFromArray(\@ARGV,
  'port=i'     => \$o{port},
  'requests=i' => \$o{requests},
  'conns=i'    => \$o{conns},
  'path=s'     => \$o{path},
  'body=i'     => \$o{body},
  'depth=i'    => \$o{depth},
  'header=s@'  => $o{header},
) or exit 2;
die "usage: $0 keepalive|churn|idle --port N [--requests K] [--conns K] [--path P] [--body B]\n"
  . "  [--header 'K: V']... [--depth D]\n"
  unless $mode =~ /\A(?:keepalive|churn|idle)\z/ && $o{port} && $o{depth} >= 1;
push @{$o{header}}, 'Connection: close' if $mode eq 'churn';
my $HEADERS = join '', map { "$_\r\n" } @{$o{header}};

# --body N: a POST with an N-byte body instead of a GET
my $REQUEST = $o{body}
  ? "POST $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nUser-Agent: pagi-bench\r\n$HEADERS"
    . "Content-Type: application/octet-stream\r\nContent-Length: $o{body}\r\n\r\n" . ('x' x $o{body})
  : "GET $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nUser-Agent: pagi-bench\r\n$HEADERS\r\n";

sub connect_one {
  my $s = IO::Socket::IP->new(PeerHost => $o{host}, PeerPort => $o{port}, Proto => 'tcp')
    or die "client.pl: connect to $o{host}:$o{port}: $@\n";
  setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
  binmode $s;
  return $s;
}

# Reads one response (Content-Length framed; with $to_close, a response without one
# is read to the server's close, as HTTP/1.0 servers such as Twiggy answer); returns
# its status
sub read_response {
  my ($s, $bufref, $to_close) = @_;
  my $end;
  while (($end = index($$bufref, "\r\n\r\n")) < 0) {
    sysread($s, $$bufref, 65536, length $$bufref) or die "client.pl: connection closed in a response head\n";
  }
  my $head = substr($$bufref, 0, $end + 4, '');
  my ($status) = $head =~ m{\AHTTP/1\.[01] ([0-9]{3})} or die "client.pl: bad status line\n";
  my ($len) = $head =~ /^content-length:[ \t]*([0-9]+)/mi;
  if (!defined $len) {
    die "client.pl: response without Content-Length\n" unless $to_close;
    1 while sysread($s, $$bufref, 65536, length $$bufref);
    $$bufref = '';
    return $status;
  }
  while (length $$bufref < $len) {
    sysread($s, $$bufref, 65536, length $$bufref) or die "client.pl: connection closed in a response body\n";
  }
  substr($$bufref, 0, $len, '');
  return $status;
}

# Sends $n requests in one write and reads their $n responses
sub request {
  my ($s, $bufref, $n, $to_close) = @_;
  my $out = $REQUEST x ($n // 1);
  syswrite($s, $out) == length $out or die "client.pl: short write: $!\n";
  for (1 .. $n // 1) {
    my $status = read_response($s, $bufref, $to_close);
    die "client.pl: status $status\n" unless $status == 200;
  }
}

$SIG{PIPE} = 'IGNORE';
if ($mode eq 'keepalive') {
  my $s = connect_one();
  my $buf = '';
  for (my $left = $o{requests}; $left > 0; $left -= $o{depth}) {
    request($s, \$buf, $left < $o{depth} ? $left : $o{depth});
  }
  close $s;
  print "ok $o{requests}\n";
  exit 0;
}
if ($mode eq 'churn') {
  for (1 .. $o{requests}) {
    my $s = connect_one();
    my $buf = '';
    request($s, \$buf, 1, 1);
    my $n = sysread($s, $buf, 1, length $buf);
    die "client.pl: the server did not close after Connection: close\n" if $n || length $buf;
    close $s;
  }
  print "ok $o{requests}\n";
  exit 0;
}

# idle: open the connections one by one (no SYN bursts), one request on each
my @socks;
for (1 .. $o{conns}) {
  my $s = connect_one();
  my $buf = '';
  request($s, \$buf);
  push @socks, $s;
}
$| = 1;
print "ready ", scalar(@socks), "\n";
1 while defined <STDIN>;
close $_ for @socks;
exit 0;
