#!/usr/bin/env perl
# The limit: the least a keep-alive HTTP/1.1 responder on IO::Async::Loop::Epoll can
# do per request. watch_io with sysread/syswrite on the sockets, no IO::Async::Stream,
# no Listener; it answers every complete request in a read with one write (so it
# pipelines), and parses only the end of each head, Content-Length, Connection: close
# and HTTP/1.0. What pagi-server does beyond this is the PAGI contract and our code.
#
#   perl benches/limit_http.pl --port 8080                  # "Hello, World!\n"
#   perl benches/limit_http.pl --port 8080 --body-size 65536
#   perl benches/limit_http.pl --port 8080 --echo            # answers the body length
use strict;
use warnings;
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Fcntl qw(F_SETFL O_NONBLOCK);
use Getopt::Long qw(:config no_ignore_case);
use IO::Socket::IP;
use IO::Async::Loop::Epoll;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my %o = (host => '127.0.0.1', port => 8080, body_size => 0, echo => 0);
GetOptions('host=s' => \$o{host}, 'port|p=i' => \$o{port}, 'body-size=i' => \$o{body_size},
  'echo' => \$o{echo}) or exit 2;

my $body = $o{body_size} ? 'x' x $o{body_size} : "Hello, World!\n";
use FindBin ();
use lib "$FindBin::RealBin/lib";
use BenchDate;
BEGIN { *date_line = \&BenchDate::date_line }

my $loop = IO::Async::Loop::Epoll->new;
my $listen = IO::Socket::IP->new(LocalHost => $o{host}, LocalPort => $o{port}, Listen => 1024,
  ReuseAddr => 1) or die "limit_http.pl: cannot listen on $o{host}:$o{port}: $@\n";
$listen->blocking(0);

sub serve {
  my ($fh) = @_;
  my ($in, $out, $closing) = ('', '', 0);
  my $done = sub { $loop->unwatch_io(handle => $fh, on_read_ready => 1, on_write_ready => 1); close $fh };
  my $flush;
  $flush = sub {
    my $n = syswrite($fh, $out);
    return $done->() if !defined $n && $! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR;
    substr($out, 0, $n // 0, '');
    if (length $out) { return $loop->watch_io(handle => $fh, on_write_ready => $flush) }
    $loop->unwatch_io(handle => $fh, on_write_ready => 1);
    $done->() if $closing;
  };
  $loop->watch_io(handle => $fh, on_read_ready => sub {
    my $n = sysread($fh, $in, 65536, length $in);
    return if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
    return $done->() if !$n;
    my $close = 0;
    while ((my $end = index($in, "\r\n\r\n")) >= 0) {
      my $head = substr($in, 0, $end + 4);
      my $len = $head =~ /^content-length:[ \t]*([0-9]+)/mi ? $1 : 0;
      last if length($in) < $end + 4 + $len;
      substr($in, 0, $end + 4 + $len, '');
      $close = 1 if $head =~ /^connection:[^\r\n]*\bclose\b/mi
        || ($head =~ m{\A[^\r\n]* HTTP/1\.0\r\n} && $head !~ /^connection:[^\r\n]*keep-alive/mi);
      my $content = $o{echo} ? "$len\n" : $body;
      $out .= "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" . date_line()
        . "Server: limit\r\nContent-Length: " . length($content) . "\r\n"
        . ($close ? "Connection: close\r\n" : '') . "\r\n" . $content;
      last if $close;
    }
    $closing = $close;
    $flush->() if length $out;
  });
}

$loop->watch_io(handle => $listen, on_read_ready => sub {
  while (accept(my $fh, $listen)) {
    fcntl($fh, F_SETFL, O_NONBLOCK);
    setsockopt($fh, IPPROTO_TCP, TCP_NODELAY, 1);
    serve($fh);
  }
});
$loop->watch_signal($_ => sub { $loop->stop }) for qw(INT TERM);
$SIG{PIPE} = 'IGNORE';
$loop->run;
exit 0;
