#!/usr/bin/env perl
# benches/ws_sse.pl: WebSocket echo round trips per second and SSE events per second,
# pagi-server with the XS backend and with the PP backend (127.0.0.1 only).
#
#   perl benches/ws_sse.pl [--rounds 3] [--seconds 3] [--size 32] [--burst 1000]
#                          [--events 100000] [--event-size 64]
#
# ws rtt:   one connection, one text message of --size bytes at a time, wait for the echo
# ws burst: one connection, 1000 messages written at once, then read the 1000 echoes
# sse:      one GET of --events events of --event-size bytes, read to the end
# The XS run is skipped (with a note) when the XS module is not built. Never run by CI.
use strict;
use warnings;
use FindBin ();
use Cwd ();
use Getopt::Long;
use File::Temp ();
use IO::Socket::IP;
use MIME::Base64 ();
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my $ROOT = Cwd::realpath("$FindBin::RealBin/..");
my %o = (seconds => 3, size => 32, events => 100000, 'event-size' => 64, burst => 1000, rounds => 3);
GetOptions(\%o, 'seconds=f', 'size=i', 'events=i', 'event-size=i', 'burst=i', 'rounds=i') or exit 2;
$SIG{PIPE} = 'IGNORE';

# The backend's codecs as the server will load them (the WebSocket frame codec can
# be PP under the XS HTTP codec when the build has no WebSocket::XS)
sub codecs {
  my ($backend) = @_;
  local $ENV{PAGI_SERVER_BACKEND} = $backend;
  my $out = `$^X -I$ROOT/lib -MPAGI::Server -e 'print PAGI::Server->backend, " ", \$PAGI::Server::Protocol::WebSocket::IMPLEMENTATION' 2>&1`;
  return $? ? undef : $out;
}

sub start_server {
  my ($backend) = @_;
  my $log = File::Temp->new(SUFFIX => '.log', TMPDIR => 1);
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    open(STDOUT, '>>', $log->filename);
    open(STDERR, '>>', $log->filename);
    exec($^X, "$ROOT/bin/pagi-server", "$ROOT/benches/apps/ws_sse.pl", '--backend', $backend,
      '--port', 0, '--no-access-log', '--log-level', 'info') or POSIX::_exit(127);
  }
  my $port;
  for (1 .. 200) {
    open(my $fh, '<', $log->filename);
    local $/;
    my $s = <$fh> // '';
    last if ($port) = $s =~ m{listening on http://[^/\s]*:([0-9]+)/};
    sleep 0.05;
  }
  die "server ($backend) did not start\n" unless $port;
  return ($pid, $port, $log);
}

sub stop_server {
  my ($pid) = @_;
  kill 'TERM', $pid;
  waitpid($pid, 0);
}

sub connect_to {
  my ($port) = @_;
  my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or die "connect: $@\n";
  setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
  return $s;
}

sub read_more {
  my ($s, $buf) = @_;
  my $n = sysread($s, $$buf, 262144, length $$buf);
  die "read: " . (defined $n ? 'EOF' : $!) . "\n" unless $n;
}

sub ws_open {
  my ($port) = @_;
  my $s = connect_to($port);
  my $key = MIME::Base64::encode_base64(join('', map { chr rand 256 } 1 .. 16), '');
  syswrite $s, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n";
  my $buf = '';
  read_more($s, \$buf) until $buf =~ /\r\n\r\n/;
  die "handshake: $buf\n" unless $buf =~ m{\AHTTP/1\.1 101 };
  $buf =~ s/\A.*?\r\n\r\n//s;
  return ($s, $buf);
}

sub ws_frame {
  my ($payload) = @_;
  my $len = length $payload;
  my $key = pack 'N', int rand 4294967296;
  my $head = $len < 126 ? pack('CC', 0x81, 0x80 | $len) : pack('CCn', 0x81, 0xfe, $len);
  return $head . $key . ($payload ^ substr($key x (int($len / 4) + 1), 0, $len));
}

# Reads $count server frames (unmasked, lengths < 64 KiB) from $s
sub ws_read {
  my ($s, $buf, $count) = @_;
  while ($count) {
    if (length $$buf >= 2) {
      my ($b0, $len) = unpack 'CC', $$buf;
      my $p = 2;
      if ($len == 126) { if (length $$buf >= 4) { $len = unpack 'n', substr($$buf, 2, 2); $p = 4 } else { $len = -1 } }
      if ($len >= 0 && length $$buf >= $p + $len) {
        substr($$buf, 0, $p + $len, '');
        $count--;
        next;
      }
    }
    read_more($s, $buf);
  }
}

sub bench_ws_rtt {
  my ($port) = @_;
  my ($s, $buf) = ws_open($port);
  my $frame = ws_frame('m' x $o{size});
  my ($n, $t0) = (0, time);
  my $end = $t0 + $o{seconds};
  while (1) {
    for (1 .. 100) { syswrite $s, $frame; ws_read($s, \$buf, 1) }
    $n += 100;
    last if time >= $end;
  }
  my $rate = $n / (time - $t0);
  close $s;
  return $rate;
}

sub bench_ws_burst {
  my ($port) = @_;
  my ($s, $buf) = ws_open($port);
  my $burst = join '', map { ws_frame('m' x $o{size}) } 1 .. $o{burst};
  my ($n, $t0) = (0, time);
  my $end = $t0 + $o{seconds};
  while (time < $end) {
    my $off = 0;
    # Write the burst while reading echoes, so neither side's buffer fills up
    my $want = $o{burst};
    vec(my $rin = '', fileno $s, 1) = 1;
    while ($want) {
      my $win = '';
      vec($win, fileno $s, 1) = 1 if $off < length $burst;
      select(my $r = $rin, my $w = ($off < length $burst ? $win : undef), undef, 5) or die "stalled\n";
      if (defined $w && vec($w, fileno $s, 1)) {
        my $k = syswrite $s, $burst, 65536, $off;
        $off += $k if $k;
      }
      if (vec($r, fileno $s, 1)) {
        read_more($s, \$buf);
        # Count whole frames
        while (length $buf >= 2) {
          my ($b0, $len) = unpack 'CC', $buf;
          my $p = 2;
          if ($len == 126) { last if length $buf < 4; $len = unpack 'n', substr($buf, 2, 2); $p = 4 }
          last if length $buf < $p + $len;
          substr($buf, 0, $p + $len, '');
          $want--;
        }
      }
    }
    $n += $o{burst};
  }
  my $rate = $n / (time - $t0);
  close $s;
  return $rate;
}

sub bench_sse {
  my ($port) = @_;
  my $s = connect_to($port);
  my $t0 = time;
  syswrite $s, "GET /events?n=$o{events}&size=$o{'event-size'} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    . "Accept: text/event-stream\r\n\r\n";
  my ($buf, $events, $tail) = ('', 0, '');
  while (1) {
    my $n = sysread($s, $buf, 262144);
    last unless $n;
    my $chunk = $tail . $buf;
    $events += () = $chunk =~ /\nid: /g;
    $tail = substr($chunk, -8);
    $events -= () = $tail =~ /\nid: /g;    # counted again next time
    last if $chunk =~ /\r\n0\r\n\r\n\z/;
  }
  $events += () = $tail =~ /\nid: /g;
  my $took = time - $t0;
  close $s;
  die "sse: got $events of $o{events} events\n" unless $events == $o{events};
  return $o{events} / $took;
}

# Rounds interleave the backends; the table shows each figure's median
my (@backends, %codecs, %res);
for my $backend (qw(xs pp)) {
  my $codecs = codecs($backend);
  if (!defined $codecs) {
    print "$backend: skipped (the XS module is not built: perl Makefile.PL && make)\n";
    next;
  }
  push @backends, $backend;
  my ($http, $ws) = split ' ', $codecs;
  $codecs{$backend} = "HTTP $http, WebSocket $ws";
}
for my $round (1 .. $o{rounds}) {
  for my $backend (@backends) {
    my ($pid, $port) = start_server($backend);
    eval {
      push @{$res{$backend}{rtt}},   bench_ws_rtt($port);
      push @{$res{$backend}{burst}}, bench_ws_burst($port);
      push @{$res{$backend}{sse}},   bench_sse($port);
      1;
    } or print "$backend round $round: error: $@";
    stop_server($pid);
  }
}

sub median { my @v = sort { $a <=> $b } @_; return @v ? $v[$#v / 2] : 0 }

printf "\nperl %vd, %s, %d CPUs online; %d rounds of %gs; ws message %d bytes, burst %d;"
  . " sse event data %d bytes, %d events\n",
  $^V, join(' ', (POSIX::uname())[0, 4]), (`nproc 2>/dev/null` =~ /([0-9]+)/)[0] // 0,
  $o{rounds}, $o{seconds}, $o{size}, $o{burst}, $o{'event-size'}, $o{events};
printf "%-8s %-26s %16s %16s %16s\n", 'backend', 'codecs', 'ws rtt/s', 'ws burst msg/s', 'sse events/s';
for my $b (@backends) {
  printf "%-8s %-26s %16.0f %16.0f %16.0f\n", $b, $codecs{$b},
    map { median(@{$res{$b}{$_} || []}) } qw(rtt burst sse);
}
