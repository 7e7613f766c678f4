package PAGI::Server::Handoff;
use strict;
use warnings;
use experimental 'signatures';
use Cwd ();
use Fcntl qw(F_GETFD F_SETFD FD_CLOEXEC F_DUPFD O_NONBLOCK F_GETFL F_SETFL);
use POSIX ();
use Socket qw(SOL_SOCKET SO_TYPE SO_ACCEPTCONN SOCK_STREAM SOCK_DGRAM AF_UNIX AF_INET AF_INET6
  sockaddr_family unpack_sockaddr_in unpack_sockaddr_in6 unpack_sockaddr_un inet_ntop pack_sockaddr_un);

our $VERSION = '0.001';

# Listening sockets handed from one process to another, and what goes with it:
# - systemd socket activation (sd_listen_fds(3)): LISTEN_PID names this process,
#   LISTEN_FDS says how many sockets it was given, starting at fd 3 (LISTEN_FDNAMES,
#   when set, names them);
# - the USR2 upgrade: a new server process (perl, its switches, the script and its
#   arguments as this one was started) gets the listening sockets the same way, plus
#   PAGI_SERVER_UPGRADE=OLDPID:FD, a pipe on which it says "ready" once it serves;
# - sd_notify(3) for Type=notify units (READY=1, and MAINPID= after an upgrade).

use constant LISTEN_FDS_START => 3;

# How this process was started, read before anything rewrites $0 (which, on Linux,
# rewrites /proc/PID/cmdline too): this module is loaded at compile time by
# PAGI::Server and PAGI::Server::Runner. Perl's own switches (-Ilib) are kept.
our (@COMMAND, $CWD);
{
  my $cmdline = '';
  if (open(my $fh, '<:raw', "/proc/$$/cmdline")) { local $/; $cmdline = <$fh> // '' }
  my @argv = split /\0/, $cmdline;
  @COMMAND = @argv ? ($^X, @argv[1 .. $#argv]) : ($^X, $0, @ARGV);
  $CWD = Cwd::getcwd();
}

# The sockets this process was given (sd_listen_fds), as {fds => [FD, ...], names =>
# [...]}, with {ready => FH, old_pid => PID} in an upgrade; undef when none. The
# variables are removed in every case (as sd_listen_fds(3) does with
# unset_environment), so that a child process never takes them for its own.
sub take_listen_fds () {
  my ($n, $pid, $names) = delete @ENV{qw(LISTEN_FDS LISTEN_PID LISTEN_FDNAMES)};
  my $upgrade = delete $ENV{PAGI_SERVER_UPGRADE};
  return undef unless defined $n && defined $pid && $pid =~ /\A[0-9]+\z/ && $pid == $$;
  die "PAGI::Server: LISTEN_FDS must be a number of sockets, not '$n'\n" unless $n =~ /\A[0-9]+\z/;
  return undef unless $n;
  my $got = {fds => [map { LISTEN_FDS_START + $_ } 0 .. $n - 1], names => [split /:/, $names // '', -1]};
  # An upgrade: our parent, the previous server, waits on a pipe for our "ready"
  if (defined $upgrade && $upgrade =~ /\A([0-9]+):([0-9]+)\z/ && $1 == getppid) {
    my ($old, $fd) = ($1, $2);
    open(my $ready, '>&=', $fd) or die "PAGI::Server: the upgrade pipe (fd $fd): $!\n";
    -p $ready or die "PAGI::Server: PAGI_SERVER_UPGRADE names fd $fd, which is not a pipe\n";
    _cloexec($ready);
    $ready->autoflush(1);
    @$got{qw(ready old_pid)} = ($ready, $old);
  }
  return $got;
}

# A listening socket from its fd: {fh, tcp, host, port} or {fh, tcp => 0, path}.
# Close-on-exec (an application's system() does not get it) and non-blocking.
sub adopt ($fd, $upgrade = 0) {
  my $what = $upgrade ? 'the previous server' : 'systemd (LISTEN_FDS)';
  open(my $fh, '+<&=', $fd) or die "PAGI::Server: fd $fd, passed by $what, is not open: $!\n";
  my $name = getsockname($fh) or die "PAGI::Server: fd $fd, passed by $what, is not a socket\n";
  my $type = unpack 'i', getsockopt($fh, SOL_SOCKET, SO_TYPE) // pack 'i', -1;
  die "PAGI::Server: fd $fd, passed by $what, is not a stream socket (ListenStream= in the .socket unit)\n"
    unless $type == SOCK_STREAM;
  # (an upgrade with reuseport passes the address held, not listening: the workers listen)
  my $listening = unpack 'i', getsockopt($fh, SOL_SOCKET, SO_ACCEPTCONN) // pack 'i', 0;
  die "PAGI::Server: fd $fd, passed by $what, is not a listening socket (Accept=no in the .socket unit)\n"
    unless $listening || $upgrade;
  _cloexec($fh);
  my $fl = fcntl($fh, F_GETFL, 0);
  fcntl($fh, F_SETFL, $fl | O_NONBLOCK) if defined $fl;
  my $family = sockaddr_family($name);
  if ($family == AF_UNIX) {
    require IO::Socket::UNIX;
    bless $fh, 'IO::Socket::UNIX';
    my $path = unpack_sockaddr_un($name);
    $path =~ s/\A\0/@/;    # (an abstract socket, as systemd writes it)
    return {fh => $fh, tcp => 0, path => $path, inherited => $upgrade ? 'upgrade' : 'systemd'};
  }
  my ($port, $addr) = $family == AF_INET6 ? unpack_sockaddr_in6($name) : unpack_sockaddr_in($name);
  bless $fh, 'IO::Socket::IP';
  return {fh => $fh, tcp => 1, host => inet_ntop($family, $addr), port => $port,
    inherited => $upgrade ? 'upgrade' : 'systemd'};
}

sub _cloexec ($fh) {
  my $flags = fcntl($fh, F_GETFD, 0) // 0;
  fcntl($fh, F_SETFD, $flags | FD_CLOEXEC);
}

# Starts this program again (the USR2 upgrade) with @fhs as its sockets 3, 4, ... and
# PAGI_SERVER_UPGRADE naming a pipe whose other end is returned: the new process
# writes "ready\n" on it once it serves, and closing it without that means it failed.
# Returns ($pid, $read_end); dies when it cannot fork.
sub spawn_successor (@fhs) {
  pipe(my $r, my $w) or die "pipe: $!\n";
  my @sigs = grep { POSIX->can("SIG$_") } qw(HUP INT TERM QUIT USR1 USR2 TTIN TTOU CHLD PIPE ALRM);
  my $block = POSIX::SigSet->new(map { POSIX->can("SIG$_")->() } @sigs);
  my $old = POSIX::SigSet->new;
  POSIX::sigprocmask(POSIX::SIG_BLOCK(), $block, $old);
  my $pid = fork;
  if (!defined $pid || $pid) {
    my $err = $!;
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), $old);
    die "fork: $err\n" unless defined $pid;
    close $w;
    return ($pid, $r);
  }
  # The child: nothing of the server runs here any more; any failure is an exit
  eval {
    close $r;
    $SIG{$_} = 'DEFAULT' for @sigs;
    my $n = @fhs;
    # Out of the way first (a socket may already sit on a number another one goes to),
    # then into place: dup2 leaves the new descriptors open across exec
    my $floor = LISTEN_FDS_START + $n + 1;
    my @high = map { fcntl($_, F_DUPFD, $floor) // die "dup: $!\n" } @fhs, $w;
    for my $i (0 .. $n) {
      defined POSIX::dup2($high[$i], LISTEN_FDS_START + $i) or die "dup2: $!\n";
      POSIX::close($high[$i]);
    }
    $ENV{LISTEN_FDS} = $n;
    $ENV{LISTEN_PID} = $$;
    delete $ENV{LISTEN_FDNAMES};
    $ENV{PAGI_SERVER_UPGRADE} = getppid() . ':' . (LISTEN_FDS_START + $n);
    chdir $CWD if defined $CWD;
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new);
    exec { $COMMAND[0] } @COMMAND;
    die "exec $COMMAND[0]: $!\n";
  };
  print STDERR "PAGI::Server: cannot start the new server process: $@";
  POSIX::_exit(127);
}

# sd_notify(3): a state line ("READY=1", "MAINPID=N") to the service manager when it
# asked for them (NOTIFY_SOCKET; Type=notify). Errors are returned, never fatal.
sub notify ($state) {
  my $path = $ENV{NOTIFY_SOCKET} // return '';
  return 'NOTIFY_SOCKET is not a socket path' unless $path =~ m{\A[/@]};
  $path =~ s/\A@/\0/;
  socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or return "socket: $!";
  defined send($s, $state, 0, pack_sockaddr_un($path)) or return "send: $!";
  return '';
}

1;

=head1 NAME

PAGI::Server::Handoff - listening sockets passed between processes

=head1 DESCRIPTION

Internal. Implements systemd socket activation (C<LISTEN_FDS>, C<LISTEN_PID>,
C<LISTEN_FDNAMES>, as L<sd_listen_fds(3)> reads them; the variables are removed once
read), the hand-over of the listening sockets to a new server process on SIGUSR2
(the same variables, and C<PAGI_SERVER_UPGRADE=OLDPID:FD>, a pipe on which the new
process says it serves), and L<sd_notify(3)> (C<READY=1>, C<MAINPID=>) when
C<NOTIFY_SOCKET> is set. See L<PAGI::Server/SIGNALS> and the README's Deployment.

=cut
