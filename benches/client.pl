#!/usr/bin/env perl
# A small HTTP/1.1 client for benches/run (blocking sockets, 127.0.0.1 only).
#
#   client.pl keepalive --port N --requests K   K sequential requests on one connection
#                                               (--body B: POSTs with a B-byte body)
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
my %o = (host => '127.0.0.1', port => 0, requests => 1000, conns => 1000, path => '/', body => 0);
GetOptionsFromArray(\@ARGV,
  'port=i'     => \$o{port},
  'requests=i' => \$o{requests},
  'conns=i'    => \$o{conns},
  'path=s'     => \$o{path},
  'body=i'     => \$o{body},
) or exit 2;
die "usage: $0 keepalive|idle --port N [--requests K] [--conns K] [--path P]\n"
  unless $mode =~ /\A(?:keepalive|idle)\z/ && $o{port};

# --body N: a POST with an N-byte body instead of a GET
my $REQUEST = $o{body}
  ? "POST $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nUser-Agent: pagi-bench\r\n"
    . "Content-Type: application/octet-stream\r\nContent-Length: $o{body}\r\n\r\n" . ('x' x $o{body})
  : "GET $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\nUser-Agent: pagi-bench\r\n\r\n";

sub connect_one {
  my $s = IO::Socket::IP->new(PeerHost => $o{host}, PeerPort => $o{port}, Proto => 'tcp')
    or die "client.pl: connect to $o{host}:$o{port}: $@\n";
  setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
  binmode $s;
  return $s;
}

# Reads one response (Content-Length framed); returns its status
sub read_response {
  my ($s, $bufref) = @_;
  my $end;
  while (($end = index($$bufref, "\r\n\r\n")) < 0) {
    sysread($s, $$bufref, 65536, length $$bufref) or die "client.pl: connection closed in a response head\n";
  }
  my $head = substr($$bufref, 0, $end + 4, '');
  my ($status) = $head =~ m{\AHTTP/1\.[01] ([0-9]{3})} or die "client.pl: bad status line\n";
  my ($len) = $head =~ /^content-length:[ \t]*([0-9]+)/mi
    or die "client.pl: response without Content-Length\n";
  while (length $$bufref < $len) {
    sysread($s, $$bufref, 65536, length $$bufref) or die "client.pl: connection closed in a response body\n";
  }
  substr($$bufref, 0, $len, '');
  return $status;
}

sub request {
  my ($s, $bufref) = @_;
  syswrite($s, $REQUEST) == length $REQUEST or die "client.pl: short write: $!\n";
  my $status = read_response($s, $bufref);
  die "client.pl: status $status\n" unless $status == 200;
}

$SIG{PIPE} = 'IGNORE';
if ($mode eq 'keepalive') {
  my $s = connect_one();
  my $buf = '';
  request($s, \$buf) for 1 .. $o{requests};
  close $s;
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
