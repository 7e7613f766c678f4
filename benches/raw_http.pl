#!/usr/bin/env perl
# The raw IO::Async baseline: a minimal keep-alive HTTP/1.1 responder written the
# idiomatic way (IO::Async::Listener + IO::Async::Stream on_read), on the loop class
# pagi-server uses. It parses only what it must: the end of the head, Content-Length
# (bodies are consumed), Connection: close and HTTP/1.0. Pipelining falls out of the
# read loop: every complete request in the buffer is answered, in one write.
#
#   perl benches/raw_http.pl --port 8080                  # "Hello, World!\n"
#   perl benches/raw_http.pl --port 8080 --body-size 65536 # a 64 KiB body
#   perl benches/raw_http.pl --port 8080 --echo            # answers the body length
#
# The streams are tuned as pagi-server's connections are: 64 KiB reads and writes,
# and each write tried at once (autoflush) instead of on the next write-ready
# event. --stream-defaults uses IO::Async::Stream's defaults instead (8 KiB, queued
# writes): much slower, above all for the 64 KiB response.
use strict;
use warnings;
use Getopt::Long qw(:config no_ignore_case);
use IO::Socket::IP;
use IO::Async::Loop::Epoll;
use IO::Async::Listener;
use IO::Async::Stream;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my %o = (host => '127.0.0.1', port => 8080, body_size => 0, echo => 0, stream_defaults => 0);
GetOptions(
  'host=s'      => \$o{host},
  'port|p=i'    => \$o{port},
  'body-size=i' => \$o{body_size},
  'echo'        => \$o{echo},
  'stream-defaults' => \$o{stream_defaults},
  'help|h'      => \$o{help},
) or exit 2;
if ($o{help}) {
  print "Usage: $0 [--host ADDR] [--port N] [--body-size BYTES | --echo] [--stream-defaults]\n";
  exit 0;
}

# Request heads larger than this are answered with 431 and a close
use constant MAX_HEAD => 16384;

# Stream tuning, the same sizes as pagi-server's reads (see the header comment)
my %TUNING = $o{stream_defaults} ? () : (read_len => 65536, write_len => 65536, autoflush => 1);

my $body = $o{body_size} ? 'x' x $o{body_size} : "Hello, World!\n";

# Response heads look like pagi-server's (Date, Server) so the wire bytes compare
use FindBin ();
use lib "$FindBin::RealBin/lib";
use BenchDate;
BEGIN { *date_line = \&BenchDate::date_line }

sub response {
  my ($content, $close) = @_;
  return "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" . date_line()
    . "Server: raw-io-async\r\nContent-Length: " . length($content) . "\r\n"
    . ($close ? "Connection: close\r\n" : '') . "\r\n" . $content;
}

my $loop = IO::Async::Loop::Epoll->new;

my $sock = IO::Socket::IP->new(
  LocalHost => $o{host},
  LocalPort => $o{port},
  Listen    => 1024,
  ReuseAddr => 1,
) or die "raw_http.pl: cannot listen on $o{host}:$o{port}: $@\n";

my $listener = IO::Async::Listener->new(
  handle    => $sock,
  on_stream => sub {
    my (undef, $stream) = @_;
    # As pagi-server does: small responses go out at once
    $stream->read_handle->setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    $stream->configure(
      %TUNING,
      on_read => sub {
        my ($self, $buffref, $eof) = @_;
        my $out = '';
        my $close = 0;
        # Answer every complete request in the buffer (pipelining)
        while (1) {
          my $end = index($$buffref, "\r\n\r\n");
          if ($end < 0) {
            if (length $$buffref > MAX_HEAD) {
              $out .= "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                . "Content-Length: 0\r\nConnection: close\r\n\r\n";
              $close = 1;
            }
            last;
          }
          my $head_len = $end + 4;
          my $head = substr($$buffref, 0, $head_len);
          my $len = $head =~ /^content-length:[ \t]*([0-9]+)/mi ? $1 : 0;
          last if length($$buffref) < $head_len + $len;    # body still arriving
          substr($$buffref, 0, $head_len + $len, '');
          $close = 1 if $head =~ /^connection:[^\r\n]*\bclose\b/mi
            || ($head =~ m{\A[^\r\n]* HTTP/1\.0\r\n} && $head !~ /^connection:[^\r\n]*keep-alive/mi);
          $out .= response($o{echo} ? "$len\n" : $body, $close);
          last if $close;
        }
        $self->write($out) if length $out;
        if ($close) { $$buffref = ''; $self->close_when_empty }
        elsif ($eof) { $self->close_when_empty }
        return 0;
      },
      on_read_error  => sub { $_[0]->close_now },
      on_write_error => sub { $_[0]->close_now },
    );
    $loop->add($stream);
  },
);
$loop->add($listener);

# SIGINT/SIGTERM stop the loop so the process exits normally (callgrind writes its
# output at exit)
$loop->watch_signal($_ => sub { $loop->stop }) for qw(INT TERM);
$SIG{PIPE} = 'IGNORE';
$loop->run;
exit 0;
