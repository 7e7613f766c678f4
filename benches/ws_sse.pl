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
# compression (permessage-deflate, RFC 7692): one connection, a message at a time
#           echoed, for a JSON text of about 1 KiB (a list of records, as an API or
#           a chat sends) and 1 KiB of random bytes, with the extension declined and
#           negotiated (this client deflates as browsers do: a 15-bit window, context
#           kept): round trips a second, the server's CPU per message (from
#           /proc/PID/stat, steadier than the rate on a shared machine), and the bytes
#           each way on the wire per message (frame headers included)
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
use Compress::Raw::Zlib ();

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
  my ($port, $offer) = @_;
  my $s = connect_to($port);
  my $key = MIME::Base64::encode_base64(join('', map { chr rand 256 } 1 .. 16), '');
  syswrite $s, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
    . ($offer ? "Sec-WebSocket-Extensions: $offer\r\n" : '') . "\r\n";
  my $buf = '';
  read_more($s, \$buf) until $buf =~ /\r\n\r\n/;
  die "handshake: $buf\n" unless $buf =~ m{\AHTTP/1\.1 101 };
  my ($ext) = $buf =~ /^Sec-WebSocket-Extensions: *([^\r]*)\r$/mi;
  $buf =~ s/\A.*?\r\n\r\n//s;
  return ($s, $buf, $ext);
}

# A client frame: text unless $op says otherwise, RSV1 when $rsv1
sub ws_frame {
  my ($payload, $op, $rsv1) = @_;
  my $len = length $payload;
  my $key = pack 'N', int rand 4294967296;
  my $b0 = 0x80 | ($rsv1 ? 0x40 : 0) | ($op // 1);
  my $head = $len < 126 ? pack('CC', $b0, 0x80 | $len) : pack('CCn', $b0, 0xfe, $len);
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

# The server's CPU seconds so far (utime + stime of /proc/PID/stat)
my $TICK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
sub cpu_of {
  my ($pid) = @_;
  open(my $fh, '<', "/proc/$pid/stat") or return 0;
  my @f = split ' ', (<$fh> =~ s/\A.*\)\s//r);
  return ($f[11] + $f[12]) / $TICK;
}

# The messages of the compression bench, 64 different ones of each kind in turn (one
# message sent again and again would compress to a back-reference): about 1 KiB of
# JSON, 1 KiB of random bytes
my @WORDS = qw(alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november);
my @JSON_MSGS = map {
  my $m = $_;
  '{"messages":[' . join(',', map {
    my $id = $m * 100 + $_;
    my $text = join ' ', map { $WORDS[($id * 7 + $_ * 3) % @WORDS] } 1 .. 3 + $id % 5;
    qq({"id":$id,"user":"user@{[$id % 37]}","room":"general","text":"$text","ts":1765000@{[$id * 13 % 10000]}});
  } 1 .. 10) . ']}'
} 1 .. 64;
my @RANDOM_MSGS = map { join '', map { chr int rand 256 } 1 .. 1024 } 1 .. 64;

# Echo round trips of one message kind, with or without permessage-deflate:
# [rate, server CPU us/msg, client->server bytes/msg, server->client bytes/msg]
sub bench_ws_deflate {
  my ($pid, $port, $kind, $deflate) = @_;
  my ($s, $buf, $ext) = ws_open($port, $deflate ? 'permessage-deflate; client_max_window_bits' : undef);
  die "permessage-deflate was not negotiated\n" if $deflate && !$ext;
  my ($msgs, $op) = $kind eq 'json' ? (\@JSON_MSGS, 1) : (\@RANDOM_MSGS, 2);
  my ($d, $i);
  if ($deflate) {
    ($d) = Compress::Raw::Zlib::Deflate->new(-WindowBits => -15, -AppendOutput => 1);
    ($i) = Compress::Raw::Zlib::Inflate->new(-WindowBits => -15, -AppendOutput => 1, -ConsumeInput => 1);
  }
  my ($n, $up, $down, $t0, $c0) = (0, 0, 0, time, cpu_of($pid));
  my $end = $t0 + $o{seconds};
  while (time < $end) {
    for (1 .. 50) {
      my $msg = $msgs->[$n % @$msgs];
      my $payload = $msg;
      if ($d) {
        my $out = '';
        $d->deflate($payload, $out);
        $d->flush($out, Compress::Raw::Zlib::Z_SYNC_FLUSH());
        $payload = substr($out, 0, -4);
      }
      my $frame = ws_frame($payload, $op, $d);
      syswrite $s, $frame;
      $up += length $frame;
      # One echo: its frame (the whole message, one frame)
      my ($len, $p);
      while (1) {
        if (length $buf >= 2) {
          ($len, $p) = ((unpack('CC', $buf))[1], 2);
          if ($len == 126) { ($len, $p) = length $buf >= 4 ? (unpack('n', substr($buf, 2, 2)), 4) : (-1, 4) }
          last if $len >= 0 && length $buf >= $p + $len;
        }
        read_more($s, \$buf);
      }
      my $reply = substr($buf, $p, $len);
      substr($buf, 0, $p + $len, '');
      $down += $p + $len;
      # (every echo is inflated, as a client must to keep its context, and checked)
      if ($i) {
        my ($in, $out) = ($reply . "\x00\x00\xff\xff", '');
        $i->inflate($in, $out);
        $reply = $out;
      }
      die "the echo is not the message\n" unless $reply eq $msg;
      $n++;
    }
  }
  my ($took, $cpu) = (time - $t0, cpu_of($pid) - $c0);
  close $s;
  return [$n / $took, $cpu / $n * 1e6, $up / $n, $down / $n];
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
      for my $kind (qw(json random)) {
        for my $deflate (0, 1) { push @{$res{$backend}{"z-$kind-$deflate"}}, bench_ws_deflate($pid, $port, $kind, $deflate) }
      }
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
printf "\nWebSocket echo, one JSON text of %.0f bytes (64 different ones in turn) or 1024 random bytes at a time;"
  . " permessage-deflate declined or negotiated (server: window 12 bits, level 6; client: 15 bits, context kept)\n",
  eval { my $t = 0; $t += length for @JSON_MSGS; $t / @JSON_MSGS };
printf "%-8s %-7s %-12s %10s %12s %14s %14s\n", 'backend', 'message', 'compression', 'echo/s', 'server us/msg',
  'bytes to srv', 'bytes from srv';
for my $b (@backends) {
  for my $kind (qw(json random)) {
    for my $deflate (0, 1) {
      my @r = @{$res{$b}{"z-$kind-$deflate"} || []};
      printf "%-8s %-7s %-12s %10.0f %12.1f %14.0f %14.0f\n", $b, $kind, $deflate ? 'deflate' : 'none',
        map { my $k = $_; median(map { $_->[$k] } @r) } 0 .. 3;
    }
  }
}
