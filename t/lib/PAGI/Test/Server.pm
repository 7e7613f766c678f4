package PAGI::Test::Server;
use strict;
use warnings;
use experimental 'signatures';
use Carp qw(croak);
use Exporter 'import';
use File::Spec;
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use Future;

# Test harness for PAGI::Server: a server in a forked child (or bin/pagi-server as a
# subprocess) with its log captured to a temp file, a raw loopback client and a small
# HTTP response parser. Nothing here depends on which codec backend is active.

our @EXPORT_OK = qw(start_server start_cli start_command run_cli http_connect http_exchange
  parse_response report respond read_body attempt delay wait_for slurp ROOT);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

use constant START_TIMEOUT => 15;    # seconds for a server to report its port
use constant STOP_TIMEOUT  => 15;    # seconds for a server to exit after SIGTERM

# The repository root: this file is t/lib/PAGI/Test/Server.pm
# (textually, so that a symlinked t/ still points at its own checkout)
my $ROOT = File::Spec->rel2abs(__FILE__) =~ s{/t/lib/PAGI/Test/Server\.pm\z}{}r;
sub ROOT () { $ROOT }

my $JSON = JSON::PP->new->ascii->canonical->allow_nonref;

# A server that closes while we write must not kill the test
$SIG{PIPE} = 'IGNORE';

# ---- the server under test -------------------------------------------------------

# start_server(app => $app, %server_options, access_log_file => $path)
# Forks; the child runs PAGI::Server->new(host => 127.0.0.1, port => 0, ...)->run with
# stderr (the server log) going to a temp file and reports its port through a pipe.
# Returns an object; ->port is undef when the child exited before listening.
sub start_server (%opt) {
  my $app = $opt{app} // $opt{psgi_app} or croak 'start_server needs an app (or a psgi_app)';
  delete $opt{app};
  my $access_file = delete $opt{access_log_file};
  require PAGI::Server;
  my $log = File::Temp->new(TEMPLATE => 'pagi-test-XXXXXX', SUFFIX => '.log', TMPDIR => 1);
  pipe(my $r, my $w) or die "pipe: $!";
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    close $r;
    my $rc = 255;
    eval {
      open(STDERR, '>>', $log->filename) or die "stderr: $!";
      open(STDOUT, '>>', $log->filename) or die "stdout: $!";
      STDERR->autoflush(1);
      STDOUT->autoflush(1);
      my %args = (host => '127.0.0.1', port => 0, access_log => undef, %opt);
      $args{app} = $app unless $args{psgi_app};
      if (defined $access_file) {
        open(my $fh, '>>', $access_file) or die "access log: $!";
        $fh->autoflush(1);
        $args{access_log} = $fh;
      }
      my $server = PAGI::Server->new(%args, on_listen => sub ($s) {
        syswrite $w, $s->port . "\n";
        close $w;
      });
      $rc = $server->run;
      1;
    } or print STDERR "PAGI-TEST-CHILD-DIED: $@";
    # No END blocks, no destructors: the parent owns the test state and the temp files
    POSIX::_exit($rc);
  }
  close $w;
  my $self = bless {pid => $pid, log => $log, log_file => $log->filename}, __PACKAGE__;
  my $line = _read_line($r, START_TIMEOUT);
  close $r;
  $self->{port} = $line =~ /\A([0-9]+)\n\z/ ? $1 : undef if defined $line;
  return $self;
}

# start_cli(args => [...], env => {...}, ulimit_nofile => N): bin/pagi-server as a
# subprocess (with at most N open files when given). The port
# comes from its startup log line "listening on http://HOST:PORT/".
sub start_cli (%opt) {
  my $log = File::Temp->new(TEMPLATE => 'pagi-cli-XXXXXX', SUFFIX => '.log', TMPDIR => 1);
  my $pid = _spawn($opt{args} || [], $opt{env} || {}, $log->filename, $log->filename, $opt{ulimit_nofile});
  my $self = bless {pid => $pid, log => $log, log_file => $log->filename}, __PACKAGE__;
  my $port;
  wait_for(sub {
    ($port) = $self->log =~ m{listening on http://[^/\s]*:([0-9]+)/};
    defined $port || $self->exited;
  }, START_TIMEOUT);
  $self->{port} = $port;
  return $self;
}

# start_command(command => [...], env => {...}): any command (systemd-socket-activate
# in front of bin/pagi-server, say) with its output in the log; nothing is awaited
sub start_command (%opt) {
  my $log = File::Temp->new(TEMPLATE => 'pagi-cmd-XXXXXX', SUFFIX => '.log', TMPDIR => 1);
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    open(STDIN, '<', File::Spec->devnull);
    open(STDOUT, '>>', $log->filename) or POSIX::_exit(126);
    open(STDERR, '>>', $log->filename) or POSIX::_exit(126);
    $ENV{$_} = $opt{env}{$_} for keys %{$opt{env} || {}};
    exec { $opt{command}[0] } @{$opt{command}} or POSIX::_exit(127);
  }
  return bless {pid => $pid, log => $log, log_file => $log->filename}, __PACKAGE__;
}

# run_cli(args => [...], env => {...}, timeout => S): runs bin/pagi-server to the end.
# Returns {exit => N or 'signal N' or 'timeout', stdout => ..., stderr => ...}.
sub run_cli (%opt) {
  my $out = File::Temp->new(TMPDIR => 1);
  my $err = File::Temp->new(TMPDIR => 1);
  my $pid = _spawn($opt{args} || [], $opt{env} || {}, $out->filename, $err->filename);
  my $self = bless {pid => $pid}, __PACKAGE__;
  my $exit = $self->wait_exit($opt{timeout} // 20);
  return {exit => $exit, stdout => slurp($out->filename), stderr => slurp($err->filename)};
}

sub _spawn ($args, $env, $out, $err, $nofile = undef) {
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    open(STDIN, '<', File::Spec->devnull);
    open(STDOUT, '>>', $out) or POSIX::_exit(126);
    open(STDERR, '>>', $err) or POSIX::_exit(126);
    $ENV{$_} = $env->{$_} for keys %$env;
    # A lower descriptor limit goes through the shell's ulimit
    exec('/bin/sh', '-c', "ulimit -n $nofile && exec \"\$@\"", 'sh', $^X, "$ROOT/bin/pagi-server", @$args)
      if $nofile;
    exec($^X, "$ROOT/bin/pagi-server", @$args) or POSIX::_exit(127);
  }
  return $pid;
}

sub port ($self)     { $self->{port} }
sub pid ($self)      { $self->{pid} }
sub log_file ($self) { $self->{log_file} }
sub log ($self)      { defined $self->{log_file} ? slurp($self->{log_file}) : '' }

# The log lines matching $re (for failures that show just those lines)
sub log_grep ($self, $re) { grep { $_ =~ $re } split /\n/, $self->log }

# The app's reports (see report()), decoded, in order
sub reports ($self) {
  return map { $JSON->decode($_) } $self->log =~ /^PAGI-TEST (.*)$/mg;
}

# Waits until the log matches $re; returns true if it did
sub wait_log ($self, $re, $timeout = 5) {
  return wait_for(sub { $self->log =~ $re }, $timeout);
}

# Waits until there are at least $n reports; returns them
# The reports whose case is $case, once there are at least $n of them (or $timeout passed)
sub reports_of ($self, $case, $n = 1, $timeout = 5) {
  my @r;
  wait_for(sub { @r = grep { ($_->{case} // '') eq $case } $self->reports; @r >= $n }, $timeout);
  return @r;
}

sub wait_reports ($self, $n, $timeout = 5) {
  my @r;
  wait_for(sub { @r = $self->reports; @r >= $n }, $timeout);
  return @r;
}

sub exited ($self) {
  return 1 if defined $self->{status};
  my $r = waitpid($self->{pid}, POSIX::WNOHANG());
  return 0 unless $r == $self->{pid};
  $self->{status} = _status($?);
  return 1;
}

# Waits for the process to exit; returns its exit code ('signal N' if killed by one,
# 'timeout' if it had to be killed after $timeout seconds)
sub wait_exit ($self, $timeout = STOP_TIMEOUT) {
  return $self->{status} if defined $self->{status};
  wait_for(sub { $self->exited }, $timeout);
  return $self->{status} if defined $self->{status};
  kill 'KILL', $self->{pid};
  waitpid($self->{pid}, 0);
  return $self->{status} = 'timeout';
}

# SIGTERM, then the exit status as wait_exit gives it
sub stop ($self, $timeout = STOP_TIMEOUT) {
  return $self->{status} if defined $self->{status} || $self->exited;
  kill 'TERM', $self->{pid};
  return $self->wait_exit($timeout);
}

sub _status ($raw) {
  return $raw >> 8 unless $raw & 127;
  return 'signal ' . ($raw & 127);
}

sub DESTROY ($self) {
  return if defined $self->{status} || !$self->{pid};
  local ($!, $?);
  if (waitpid($self->{pid}, POSIX::WNOHANG()) == 0) {
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
  }
}

# ---- helpers for apps (they run in the server child) ------------------------------

# Writes one observation to the server log, for the test to read with ->reports.
# Strings are kept as code points (JSON \u escapes), so bytes and characters survive.
sub report (%data) {
  print STDERR 'PAGI-TEST ' . $JSON->encode(\%data) . "\n";    # one write: workers share the log
}

# Sends a whole response: start, then one final body
sub respond ($send, $status, $body = '', @headers) {
  return $send->({type => 'http.response.start', status => $status, headers => \@headers})
    ->then(sub { $send->({type => 'http.response.body', body => $body}) });
}

# The request body, read to its end: a Future of the bytes (stops at a disconnect)
sub read_body ($receive, $body = '') {
  return $receive->()->then(sub ($ev) {
    return Future->done($body) if $ev->{type} ne 'http.request';
    $body .= $ev->{body};
    return $ev->{more} ? read_body($receive, $body) : Future->done($body);
  });
}

# Runs a $send and gives, as a Future, 'ok' or 'error: MESSAGE' instead of failing
sub attempt ($send, $ev) {
  my $error = sub ($err, @) { Future->done('error: ' . ($err =~ s/\s+\z//r)) };
  my $f = eval { $send->($ev) } or return $error->($@);
  return $f->then(sub { Future->done('ok') }, $error);
}

# A Future done after $seconds, on the server's loop (the one IO::Async::Loop->new gives)
sub delay ($seconds) {
  require IO::Async::Loop;
  return IO::Async::Loop->new->delay_future(after => $seconds);
}

# ---- small utilities ---------------------------------------------------------------

sub slurp ($file) {
  open(my $fh, '<:raw', $file) or return '';
  local $/;
  my $s = <$fh>;
  return $s // '';
}

# Polls $cond every 20 ms until it is true or $timeout seconds pass; returns its value
sub wait_for ($cond, $timeout = 5) {
  my $deadline = Time::HiRes::time() + $timeout;
  while (1) {
    my $v = $cond->();
    return $v if $v;
    return $v if Time::HiRes::time() >= $deadline;
    Time::HiRes::sleep(0.02);
  }
}

sub _read_line ($fh, $timeout) {
  my $buf = '';
  my $deadline = Time::HiRes::time() + $timeout;
  while ($buf !~ /\n/) {
    my $left = $deadline - Time::HiRes::time();
    return undef if $left <= 0;
    vec(my $rin = '', fileno($fh), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $left);
    next if $n < 0 && $!{EINTR};
    return undef if $n <= 0;
    my $got = sysread($fh, $buf, 256, length $buf);
    return undef unless $got;
  }
  return $buf;
}

# ---- the client -------------------------------------------------------------------

sub http_connect ($port, %opt) { PAGI::Test::Client->new($port, %opt) }

# http_exchange($port, $bytes, n => 1, methods => [...], timeout => 5)
# Connects, sends $bytes, reads n responses. Returns ($responses, $client).
sub http_exchange ($port, $bytes, %opt) {
  my $c = PAGI::Test::Client->new($port);
  $c->send($bytes);
  my @r = $c->read_responses(%opt);
  return (\@r, $c);
}

# ---- the response parser ----------------------------------------------------------

# parse_response($buf, $pos, method => 'GET', closed => 0/1)
# Parses one response (a 1xx included) starting at $pos. Returns ($response, $new_pos),
# or () when more bytes are needed. Dies on bytes that are not a valid response.
# $response: {status, reason, version, headers => [[lc name, value], ...],
#   names => [names as sent], h => {lc name => values joined with ', '}, body,
#   framing => none|length|chunked|close, chunks => [sizes], trailers => [[n, v], ...],
#   head => head bytes, raw => all bytes}
sub parse_response ($buf, $pos = 0, %opt) {
  my $method = $opt{method} // 'GET';
  my $end = index($buf, "\r\n\r\n", $pos);
  return () if $end < 0;
  my $head = substr($buf, $pos, $end + 4 - $pos);
  my @lines = split /\r\n/, substr($head, 0, -4);
  my $status_line = shift @lines;
  my ($version, $status, $reason) = $status_line =~ m{\A(HTTP/1\.[01]) ([0-9]{3}) ([^\r\n]*)\z}
    or die "malformed status line: " . _show($status_line) . "\n";
  my (@headers, @names, %h);
  for my $l (@lines) {
    my ($n, $v) = $l =~ /\A([!#\$%&'*+\-.^_`|~0-9A-Za-z]+): ?([^\r\n\0]*?)[ \t]*\z/
      or die "malformed header line: " . _show($l) . "\n";
    push @names, $n;
    push @headers, [lc $n, $v];
    $h{lc $n} = exists $h{lc $n} ? "$h{lc $n}, $v" : $v;
  }
  my $r = {status => 0 + $status, reason => $reason, version => $version,
    headers => \@headers, names => \@names, h => \%h, head => $head, body => '',
    chunks => [], trailers => []};
  my $p = $end + 4;
  if ($status < 200 || $status == 204 || $status == 304 || $method eq 'HEAD') {
    $r->{framing} = 'none';
  }
  elsif (defined $h{'transfer-encoding'}) {
    die "unexpected transfer-encoding '$h{'transfer-encoding'}'\n" unless lc $h{'transfer-encoding'} eq 'chunked';
    die "both transfer-encoding and content-length in a response\n" if defined $h{'content-length'};
    $r->{framing} = 'chunked';
    while (1) {
      my $nl = index($buf, "\r\n", $p);
      return () if $nl < 0;
      my $line = substr($buf, $p, $nl - $p);
      $line =~ /\A([0-9a-fA-F]+)\z/ or die "malformed chunk size line: " . _show($line) . "\n";
      my $size = hex $1;
      $p = $nl + 2;
      if ($size == 0) {
        while (1) {
          my $tnl = index($buf, "\r\n", $p);
          return () if $tnl < 0;
          my $t = substr($buf, $p, $tnl - $p);
          $p = $tnl + 2;
          last if $t eq '';
          my ($n, $v) = $t =~ /\A([!#\$%&'*+\-.^_`|~0-9A-Za-z]+): ?(.*?)\z/
            or die "malformed trailer: " . _show($t) . "\n";
          push @{$r->{trailers}}, [lc $n, $v];
        }
        last;
      }
      return () if length($buf) < $p + $size + 2;
      $r->{body} .= substr($buf, $p, $size);
      push @{$r->{chunks}}, $size;
      die "chunk data not followed by CRLF\n" unless substr($buf, $p + $size, 2) eq "\r\n";
      $p += $size + 2;
    }
  }
  elsif (defined $h{'content-length'}) {
    $h{'content-length'} =~ /\A[0-9]+\z/ or die "bad content-length '$h{'content-length'}'\n";
    $r->{framing} = 'length';
    my $len = $h{'content-length'};
    return () if length($buf) - $p < $len;
    $r->{body} = substr($buf, $p, $len);
    $p += $len;
  }
  else {
    $r->{framing} = 'close';
    return () unless $opt{closed};
    $r->{body} = substr($buf, $p);
    $p = length $buf;
  }
  $r->{raw} = substr($buf, $pos, $p - $pos);
  return ($r, $p);
}

sub _show ($s) {
  $s = substr($s, 0, 200) . '...' if length $s > 200;
  $s =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
  return "'$s'";
}

package PAGI::Test::Client;
use strict;
use warnings;
use experimental 'signatures';
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNRESET EPIPE);
use IO::Socket::IP;
use Socket qw(SHUT_WR);
use Time::HiRes ();
use Future;

# A raw loopback client: every wait is bounded by a timeout

sub new ($class, $port, %opt) {
  die "no port to connect to (did the server start?)\n" unless $port;
  # (local: the address to connect from, such as 127.0.0.2: a client another than the
  # proxies a test trusts)
  my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port, Timeout => 5,
    defined $opt{local} ? (LocalHost => $opt{local}) : ())
    or die "cannot connect to 127.0.0.1:$port: $@\n";
  $sock->blocking(0);
  return bless {sock => $sock, in => '', out => '', pos => 0, closed => 0, reset => 0,
    timeout => $opt{timeout} // 5}, $class;
}

sub sock ($self)   { $self->{sock} }
sub closed ($self) { $self->{closed} }                 # the server closed (EOF or reset)
sub buffer ($self) { substr($self->{in}, $self->{pos}) }    # received, not yet parsed
sub local_port ($self) { $self->{sock}->sockport }

# Sends all of $bytes (reading whatever arrives meanwhile). Returns true if all sent.
sub send ($self, $bytes, %opt) {
  $self->{out} .= $bytes;
  my $deadline = Time::HiRes::time() + ($opt{timeout} // $self->{timeout});
  $self->_pump($deadline, sub { !length $self->{out} });
  return !length $self->{out};
}

# Sends the pieces one by one, sleeping $delay seconds before each but the first
sub send_slowly ($self, $pieces, $delay) {
  my $first = 1;
  for my $p (@$pieces) {
    $self->pause($delay) unless $first;
    $first = 0;
    return 0 unless $self->send($p);
  }
  return 1;
}

# Sleeps while still reading what the server sends
sub pause ($self, $seconds) {
  my $deadline = Time::HiRes::time() + $seconds;
  $self->_pump($deadline, sub { 0 });
}

# Half-close: no more bytes from us
sub shutdown_write ($self) { shutdown($self->{sock}, SHUT_WR) }

sub close ($self) {
  CORE::close($self->{sock}) if $self->{sock};
  $self->{sock} = undef;
}

# Reads until the server closes or $timeout passes; true if it closed
sub wait_closed ($self, $timeout = $self->{timeout}) {
  my $deadline = Time::HiRes::time() + $timeout;
  $self->_pump($deadline, sub { $self->{closed} });
  return $self->{closed};
}

# read_responses(n => N, methods => [...], timeout => S, until_close => 0/1)
# Parses responses as they arrive until N final (non-1xx) responses are complete, or
# the server closes, or the timeout passes. 1xx responses are attached to the next
# final one as {interim => [...]}. methods->[i] is the request method of response i
# (for HEAD); default GET.
sub read_responses ($self, %opt) {
  my $n = $opt{n} // 1;
  my @methods = @{$opt{methods} || []};
  my $deadline = Time::HiRes::time() + ($opt{timeout} // $self->{timeout});
  my (@done, @interim);
  my $parse = sub {
    while (@done < $n) {
      my $method = $methods[@done] // $opt{method} // 'GET';
      my ($r, $p) = PAGI::Test::Server::parse_response($self->{in}, $self->{pos},
        method => $method, closed => $self->{closed});
      last unless $r;
      $self->{pos} = $p;
      if ($r->{status} < 200) { push @interim, $r; next }
      $r->{interim} = [@interim];
      @interim = ();
      push @done, $r;
    }
    # Keep the buffer small during long pipelines
    if ($self->{pos} > 65536) {
      substr($self->{in}, 0, $self->{pos}, '');
      $self->{pos} = 0;
    }
    return @done >= $n && !$opt{until_close};
  };
  $self->_pump($deadline, sub { $parse->() || $self->{closed} && ($parse->(), 1) });
  $self->{interim} = \@interim;
  return @done;
}

# Reads everything until close or timeout; returns the unparsed bytes
sub read_all ($self, $timeout = $self->{timeout}) {
  $self->wait_closed($timeout);
  my $s = substr($self->{in}, $self->{pos});
  $self->{pos} = length $self->{in};
  return $s;
}

# The IO loop: write pending output, read input, until $done->() or the deadline
sub _pump ($self, $deadline, $done) {
  my $sock = $self->{sock} or return;
  while (1) {
    return 1 if $done->();
    my $left = $deadline - Time::HiRes::time();
    return 0 if $left <= 0;
    my $fd = fileno $sock;
    vec(my $rin = '', $fd, 1) = 1;
    my $win;
    if (length $self->{out}) { vec($win = '', $fd, 1) = 1 }
    $rin = undef if $self->{closed};
    if (!defined $rin && !defined $win) {
      # Closed and nothing to write: nothing can change any more
      Time::HiRes::sleep($left);
      return $done->() ? 1 : 0;
    }
    my $n = select(my $rout = $rin, my $wout = $win, undef, $left > 0.05 ? 0.05 : $left);
    next if $n <= 0;
    if (defined $wout && vec($wout, $fd, 1)) {
      my $w = syswrite($sock, $self->{out}, 65536);
      if (defined $w) { substr($self->{out}, 0, $w, '') }
      elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
        # The server is gone; what it sent can still be read
        $self->{out} = '';
        $self->{write_error} = "$!";
      }
    }
    if (defined $rout && vec($rout, $fd, 1)) {
      my $r = sysread($sock, $self->{in}, 65536, length $self->{in});
      if (!defined $r) {
        next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        $self->{reset} = 1 if $! == ECONNRESET;
        $self->{closed} = 1;
      }
      elsif ($r == 0) { $self->{closed} = 1 }
    }
  }
}

sub DESTROY ($self) { CORE::close($self->{sock}) if $self->{sock} }

1;

=head1 NAME

PAGI::Test::Server - run PAGI::Server in tests, talk raw HTTP to it

=head1 SYNOPSIS

  use lib 't/lib';
  use PAGI::Test::Server qw(:all);

  my $srv = start_server(app => $app, keepalive_timeout => 2);
  my ($res) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  is $res->[0]{status}, 200;
  is $srv->stop, 0, 'server exits 0 on SIGTERM';

=head1 DESCRIPTION

C<start_server> forks a child that runs C<< PAGI::Server->new(app => ..., host =>
'127.0.0.1', port => 0, access_log => undef, %options)->run >> with its stderr in a
temp file (C<< ->log >>) and reports the bound port through a pipe (the server's
C<on_listen> option). C<< ->stop >> sends SIGTERM and returns the exit status.
C<report(%data)> lets an app running in the child record observations that the
test reads back with C<< ->reports >> or C<< ->wait_reports($n) >>.

C<start_cli> and C<run_cli> run F<bin/pagi-server> as a subprocess; C<start_command>
runs any command (F<systemd-socket-activate> in front of it, say) with its output in
the log.

C<http_connect> gives a L<PAGI::Test::Client>: C<send>, C<send_slowly>,
C<read_responses(n =E<gt> N, methods =E<gt> [...])>, C<wait_closed>, C<read_all>;
every wait has a timeout. C<parse_response> parses one response (Content-Length,
chunked with trailers, close-delimited, and no body for HEAD, 1xx, 204 and 304).

=cut
