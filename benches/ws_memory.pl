#!/usr/bin/env perl
# benches/ws_memory.pl: the memory a WebSocket connection costs the server, with and
# without permessage-deflate, on each backend: N connections (default 10,000) are
# opened one after another, each sends one message (a JSON text of about 1 KiB,
# compressed when the extension was agreed) and reads its echo, and all stay open; the
# server's RSS growth divided by N is the figure. Compression holds zlib state per
# direction once a direction was used; --no-context-takeover shows the server's option
# that drops it after each message.
#
#   perl benches/ws_memory.pl [--conns 10000] [--backend xs,pp]
#
# Needs an open-file limit above N for this process and the server (both raise their
# soft limit to the hard one). Never run by CI.
use strict;
use warnings;
use FindBin ();
use Cwd ();
use Getopt::Long;
use File::Temp ();
use IO::Socket::IP;
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Compress::Raw::Zlib ();

my $ROOT = Cwd::realpath("$FindBin::RealBin/..");
my %o = (conns => 10000, backend => 'xs,pp');
GetOptions(\%o, 'conns=i', 'backend=s') or exit 2;
$SIG{PIPE} = 'IGNORE';

# Our own descriptors: as many as the hard limit allows
if (eval { require BSD::Resource; 1 }) {
  my (undef, $hard) = BSD::Resource::getrlimit(BSD::Resource::RLIMIT_NOFILE());
  BSD::Resource::setrlimit(BSD::Resource::RLIMIT_NOFILE(), $hard, $hard);
}

my $MSG = '{"messages":[' . join(',', map { qq({"id":$_,"user":"user$_","room":"general","text":"message number $_ of the bench","ts":1765000$_}) } 1 .. 9) . ']}';

sub rss_kib {
  my ($pid) = @_;
  open(my $fh, '<', "/proc/$pid/status") or return 0;
  while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
  return 0;
}

sub start_server {
  my ($backend, @args) = @_;
  my $log = File::Temp->new(SUFFIX => '.log', TMPDIR => 1);
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    open(STDOUT, '>>', $log->filename);
    open(STDERR, '>>', $log->filename);
    exec($^X, "$ROOT/bin/pagi-server", "$ROOT/benches/apps/ws_sse.pl", '--backend', $backend, '--port', 0,
      '--no-access-log', '--log-level', 'warn', '--timeout', 0, @args) or POSIX::_exit(127);
  }
  for (1 .. 400) {
    open(my $fh, '<', $log->filename);
    my $s = do { local $/; <$fh> } // '';
    # (--log-level warn hides the listening line: ask the kernel instead)
    my ($port) = `ss -ltnpH 2>/dev/null` =~ /127\.0\.0\.1:(\d+)\s.*pid=$pid,/;
    return ($pid, $port, $log) if $port;
    sleep 0.05;
  }
  die "server ($backend) did not start\n";
}

# One connection: the handshake (offering permessage-deflate when $deflate), one
# message and its echo; returns the socket, left open
sub open_one {
  my ($port, $deflate) = @_;
  my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or die "connect: $@\n";
  my $key = MIME::Base64::encode_base64(join('', map { chr rand 256 } 1 .. 16), '');
  syswrite $s, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
    . ($deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : '') . "\r\n";
  my $buf = '';
  sysread($s, $buf, 65536, length $buf) or die "handshake: EOF\n" until $buf =~ /\r\n\r\n/;
  my $agreed = $buf =~ /^Sec-WebSocket-Extensions: permessage-deflate/mi;
  die "permessage-deflate not agreed\n" if $deflate && !$agreed;
  $buf =~ s/\A.*?\r\n\r\n//s;
  my ($payload, $b0) = ($MSG, 0x81);
  if ($deflate) {
    my ($d) = Compress::Raw::Zlib::Deflate->new(-WindowBits => -15, -AppendOutput => 1);
    my $out = '';
    $d->deflate($payload, $out);
    $d->flush($out, Compress::Raw::Zlib::Z_SYNC_FLUSH());
    ($payload, $b0) = (substr($out, 0, -4), 0xc1);
  }
  my $len = length $payload;
  my $mask = pack 'N', int rand 4294967296;
  my $head = $len < 126 ? pack('CC', $b0, 0x80 | $len) : pack('CCn', $b0, 0xfe, $len);
  syswrite $s, $head . $mask . ($payload ^ substr($mask x (int($len / 4) + 1), 0, $len));
  # The echo: one frame
  while (1) {
    if (length $buf >= 2) {
      my ($l, $p) = ((unpack 'CC', $buf)[1], 2);
      ($l, $p) = length $buf >= 4 ? (unpack('n', substr($buf, 2, 2)), 4) : (undef, 4) if $l == 126;
      last if defined $l && length $buf >= $p + $l;
    }
    sysread($s, $buf, 65536, length $buf) or die "echo: EOF\n";
  }
  return $s;
}

my @rows;
for my $backend (split /,/, $o{backend}) {
  for my $case (['none', 0, '--no-ws-compression'], ['deflate', 1], ['deflate, no context takeover', 1,
    '--ws-compression-no-context-takeover']) {
    my ($name, $deflate, @args) = @$case;
    my ($pid, $port) = eval { start_server($backend, @args) };
    if (!$pid) { print "$backend: skipped: $@"; last }
    # (a few connections first: what the first connection loads is not counted)
    my @warm = map { open_one($port, $deflate) } 1 .. 50;
    sleep 0.3;
    my $rss0 = rss_kib($pid);
    my $t0 = time;
    my @socks;
    eval { push @socks, open_one($port, $deflate) for 1 .. $o{conns}; 1 } or print "$backend $name: $@";
    sleep 0.5;
    my $rss1 = rss_kib($pid);
    push @rows, [$backend, $name, scalar @socks, ($rss1 - $rss0) / (@socks || 1), time - $t0, $rss1 / 1024];
    undef @socks;
    undef @warm;
    kill 'TERM', $pid;
    waitpid($pid, 0);
  }
}

printf "\nperl %vd; WebSocket connections each with one %d-byte JSON message echoed, then idle\n", $^V, length $MSG;
printf "%-8s %-30s %8s %12s %10s %10s\n", 'backend', 'compression', 'conns', 'KiB/conn', 'open (s)', 'RSS MiB';
printf "%-8s %-30s %8d %12.1f %10.1f %10.1f\n", @$_ for @rows;
