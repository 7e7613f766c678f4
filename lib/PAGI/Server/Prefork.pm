package PAGI::Server::Prefork;
use strict;
use warnings;
use experimental 'signatures';
use POSIX ();
use Scalar::Util qw(weaken);
use Time::HiRes ();
use PAGI::Server::Process;

our $VERSION = '0.001';

# The master of a pre-forked PAGI::Server. It runs on an IO::Async loop (the one the
# server was added to, or the one PAGI::Server->run made for it), forks the workers on
# the sockets the server bound (each makes a fresh loop of its own, then runs lifespan
# and accepts), and supervises them from that loop: a pipe the workers write to
# (ready, retire, beat), their exits (the loop's watch_process), the signals
# (PAGI::Server::Process, which works on every loop), and one timer for respawns and
# deadlines. It never runs the application. It owns its state; the server calls
# start, stop, stop_now and finished. The worker's side is here too (_worker): the
# server serves in it through its public methods (as_worker, listen, shutdown).

use constant {
  STARTUP_FAILED => 3,      # a worker's exit status when lifespan startup failed
  BACKOFF_MIN    => 0.1,    # first respawn delay after a worker died young
  BACKOFF_MAX    => 5,      # the delay doubles up to this
  STABLE_AFTER   => 10,     # a worker that lived this long resets its slot's backoff
  KILL_GRACE     => 30,     # after shutdown_timeout, SIGKILL workers still running
  MAX_WAIT       => 1,      # the longest the master goes without looking at its workers
};

my @SIGNALS = qw(INT TERM QUIT HUP TTIN TTOU USR1 USR2);

#   PAGI::Server::Prefork->new(server => $server, workers => $n, loop => $loop)
sub new ($class, %arg) {
  return bless {
    server  => $arg{server},
    loop    => $arg{loop},
    n       => $arg{workers},         # slots 1..n are wanted
    gen     => 1,                     # HUP starts a new generation
    workers => {},                    # pid => {pid, slot, gen, born, ready, told}
    slots   => {},                    # slot => {fails, due}
    status  => 0,
  }, $class;
}

sub log ($self, $level, $msg) { $self->{server}->log($level, $msg) }

# The master's exit status (1 when the first workers could not start, or an upgrade
# gave up), and a Future done with it once every worker is gone
sub status ($self) { $self->{status} }
sub finished ($self) { $self->{done} }

# Starts supervising: the pipe from the workers, the signals, the first workers
sub start ($self) {
  my $loop = $self->{loop};
  $self->{done} = $loop->new_future;
  # (every callback on the loop is the master's alone: in a worker, should a loop
  # library run what the parent watched, it does nothing)
  $self->{pid} = $$;
  # One pipe from the workers: "WORD PID\n" lines
  pipe(my $r, my $w) or die "PAGI::Server: pipe: $!\n";
  $_->blocking(0) for $r, $w;
  $w->autoflush(1);
  @$self{qw(rpipe wpipe)} = ($r, $w);
  weaken(my $weak = $self);
  my $buf = '';
  $loop->watch_io(handle => $r, on_read_ready => sub {
    return unless $weak && $$ == $weak->{pid};
    1 while sysread($r, $buf, 4096, length $buf);
    while ($buf =~ s/\A([a-z]+) ([0-9]+)\n//) { $weak->_message($1, $2) }
    $weak->_step;
  });
  $self->{signals} = PAGI::Server::Process->new(log => sub ($level, $msg) { $weak->log($level, $msg) if $weak });
  $self->{signals}->on_signals($loop, \@SIGNALS, sub ($sig) {
    return unless $weak && $$ == $weak->{pid};
    $weak->_signal($sig);
    $weak->_step;
  });
  $self->log(info => "master pid $$: starting $self->{n} worker(s)");
  $self->_step;
}

# A signal that came before the master took its signals (PAGI::Server->run keeps one
# from its startup): acted on from the loop, as if it came now
sub signal ($self, $sig) {
  weaken(my $weak = $self);
  $self->{signals}->queue(sub ($s) {
    return unless $weak;
    $weak->_signal($s);
    $weak->_step;
  }, $sig);
}

# A graceful stop (the server's shutdown): every worker finishes its in-flight work;
# asked again, the workers close their connections at once. The Future of finished.
sub stop ($self) {
  return $self->{done} if $self->{finished};
  $self->_stop;
  $self->_step;
  return $self->{done};
}

# The server left its loop while serving: the workers are told to stop at once and
# the master lets go of everything on the loop now (it does not wait for them)
sub stop_now ($self) {
  return if $self->{finished};
  $self->_stop for 1, 2;
  $self->_finish;
}

# What the master does, once something happened (a signal, a worker's word or exit,
# the timer): finish when stopping and no worker is left, else start the workers
# that are missing, kill the ones that hang, and look again soon
sub _step ($self) {
  return if $self->{finished};
  return $self->_finish if $self->{stopping} && !%{$self->{workers}};
  $self->_maintain;
  $self->_check_workers;
  my $loop = $self->{loop};
  $loop->unwatch_time(delete $self->{timer}) if $self->{timer};
  weaken(my $weak = $self);
  $self->{timer} = $loop->watch_time(after => $self->_next_wait, code => sub {
    return unless $weak && $$ == $weak->{pid};
    delete $weak->{timer};
    $weak->_step;
  });
}

# ---- workers -------------------------------------------------------------------

sub _spawn ($self, $slot) {
  my $server = $self->{server};
  # Signals wait until the child has its own handlers (else a TERM sent right after
  # the fork would run the master's handler in the worker and be lost)
  my $block = POSIX::SigSet->new(map { POSIX->can("SIG$_")->() } @SIGNALS, 'CHLD');
  my $old = POSIX::SigSet->new;
  POSIX::sigprocmask(POSIX::SIG_BLOCK(), $block, $old);
  my $pid = fork;
  POSIX::sigprocmask(POSIX::SIG_SETMASK(), $old) if $pid || !defined $pid;
  if (!defined $pid) {
    $self->log(error => "fork failed: $!; retrying in 1 s");
    $self->{slots}{$slot}{due} = Time::HiRes::time() + 1;
    return;
  }
  if ($pid) {
    $self->{workers}{$pid} = {pid => $pid, slot => $slot, gen => $self->{gen},
      born => Time::HiRes::time(), ready => 0, told => ''};
    $self->log(info => "worker $slot started (pid $pid)");
    $self->_watch_exit($pid);
    return;
  }

  # The worker. What the master watches on its loop is let go first (in this process
  # only: it would run on the worker's loop where the loop library keeps one set of
  # watches per process, as GLib and Mojo's EV do)
  $self->_leave_loop;
  close $self->{rpipe};
  # (the pipe to the previous master of an upgrade is the master's to close)
  if (my $up = $server->upgrading) { close $up->{ready} }
  # Its signals: INT/TERM stop, USR2 retires; the master's others are ignored (a
  # TTIN/TTOU sent to the process group must not stop it); none stays blocked (a
  # master on Epoll blocks CHLD for its loop)
  my $early;
  $SIG{$_} = 'IGNORE' for qw(HUP TTIN TTOU USR1 QUIT PIPE);    # (USR1: until it serves)
  $SIG{CHLD} = 'DEFAULT';
  $SIG{$_} = do { my $s = $_; sub { $early //= $s } } for qw(INT TERM USR2);
  POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new);
  my $w = $self->{wpipe};
  my $notify = sub ($word) { syswrite $w, "$word $$\n" };
  my $rc = eval { $self->_worker($slot, $notify, sub { $early }) };
  if (!defined $rc) {
    $server->log(error => 'worker failed: ' . ($@ =~ s/\s+\z//r));
    $rc = 1;
  }
  # No END blocks or destructors of the master's state: flush and leave
  STDOUT->flush;
  STDERR->flush;
  POSIX::_exit($rc);
}

sub _message ($self, $word, $pid) {
  my $wk = $self->{workers}{$pid} or return;
  if ($word eq 'beat') { $wk->{beat} = Time::HiRes::time() }
  elsif ($word eq 'ready') {
    $wk->{ready} = 1;
    $wk->{beat}  = Time::HiRes::time();
    $self->{ever_ready} = 1;
    $self->log(debug => "worker $wk->{slot} ready (pid $pid)");
    # Every slot of the first generation ready: the server serves
    if (!$self->{serving} && !$self->{stopping}
      && $self->{n} == grep { $_->{ready} && !$_->{told} } values %{$self->{workers}}) {
      $self->{serving} = 1;
      $self->{server}->serving;
    }
  }
  elsif ($word eq 'retire') {
    # max_requests: the replacement starts now, while this one finishes its work
    $wk->{told} ||= 'retire';
    $wk->{told_at} //= Time::HiRes::time();
  }
}

sub _tell ($self, $wk, $what) {
  return if $wk->{told} eq $what || $wk->{told} eq 'stop';
  $wk->{told} = $what;
  $wk->{told_at} = Time::HiRes::time();
  kill $what eq 'retire' ? 'USR2' : 'TERM', $wk->{pid};
}

# A child's exit reaches the master through the loop (watch_process: one SIGCHLD
# handler for the whole program, which reaps by pid, so an embedding program's own
# children are left to it)
sub _watch_exit ($self, $pid) {
  weaken(my $weak = $self);
  $self->{loop}->watch_process($pid => sub ($pid, $raw) {
    return unless $weak && !$weak->{finished} && $$ == $weak->{pid};
    $weak->_exited($pid, $raw);
    $weak->_step;
  });
}

sub _exited ($self, $pid, $raw) {
  return $self->_successor_exited($raw) if $self->{successor} && $pid == $self->{successor}{pid};
  my $wk = delete $self->{workers}{$pid} or return;
  my $slot = $wk->{slot};
  my $how = $raw & 127 ? 'signal ' . ($raw & 127) : 'status ' . ($raw >> 8);
  return $self->log(info => "worker $slot (pid $pid) exited ($how)") if $wk->{told} || $self->{stopping};
  $self->log(warn => "worker $slot (pid $pid) exited unexpectedly ($how)");
  if (!($raw & 127) && $raw >> 8 == STARTUP_FAILED && !$wk->{ready} && !$self->{ever_ready}) {
    # The application refuses to start: stopping beats restarting it forever
    $self->log(error => 'a worker could not start the application; stopping');
    $self->{status} = 1;
    return $self->_stop(1);
  }
  if (my $up = $self->{server}->upgrading) {
    # The new master of an upgrade, not serving yet: any worker lost gives it up
    # (the previous master serves on) rather than keeping two masters running
    $self->log(error => 'upgrade: a worker exited before the workers all served; giving up '
      . "(the previous master, pid $up->{old_pid}, serves on)");
    $self->{status} = 1;
    return $self->_stop(1);
  }
  # Backoff for a slot whose workers keep dying young; a long-lived one resets it
  my $s = $self->{slots}{$slot} //= {fails => 0};
  my $lived = Time::HiRes::time() - $wk->{born};
  $s->{fails} = $lived >= STABLE_AFTER ? 0 : $s->{fails} + 1;
  my $delay = $s->{fails} ? BACKOFF_MIN * 2 ** ($s->{fails} - 1) : 0;
  $delay = BACKOFF_MAX if $delay > BACKOFF_MAX;
  $s->{due} = Time::HiRes::time() + $delay;
  $self->log(warn => sprintf 'restarting worker %d in %.1f s', $slot, $delay) if $delay >= 1;
}

# Starts the workers that are missing, retires the ones no longer wanted
sub _maintain ($self) {
  return if $self->{stopping};
  my $now = Time::HiRes::time();
  my (%current, %ready);
  for my $wk (values %{$self->{workers}}) {
    next if $wk->{told} || $wk->{gen} != $self->{gen};
    $current{$wk->{slot}} = 1;
    $ready{$wk->{slot}} = 1 if $wk->{ready};
  }
  for my $slot (1 .. $self->{n}) {
    next if $current{$slot};
    my $s = $self->{slots}{$slot} //= {fails => 0};
    next if ($s->{due} // 0) > $now;
    $self->_spawn($slot);
  }
  for my $wk (values %{$self->{workers}}) {
    next if $wk->{told};
    if ($wk->{slot} > $self->{n}) { $self->_tell($wk, 'retire'); next }
    next if $wk->{gen} == $self->{gen};
    # HUP: the old worker of a slot retires once its replacement is ready (lifespan
    # startup done, accepting); until then it serves on, so a replacement that cannot
    # start costs nothing
    $self->_tell($wk, 'retire') if $ready{$wk->{slot}};
  }
}

# heartbeat_timeout: a serving worker tells the master it is alive every fifth of it
# (from its loop's once-a-second tick); one silent for longer has a blocked loop
# (a blocking call, an endless computation) and is killed, and started again. A
# retiring worker (HUP, TTOU, max_requests, an upgrade) has shutdown_timeout to
# finish its requests, and KILL_GRACE more; one still there then is blocked too, and
# killed (a stop has its own deadline, kill_at).
sub _check_workers ($self) {
  my $server = $self->{server};
  my $limit = $server->option('heartbeat_timeout');
  my $grace = $server->option('shutdown_timeout');
  my $now = Time::HiRes::time();
  for my $wk (values %{$self->{workers}}) {
    next if $wk->{killed};
    if ($wk->{told}) {
      my $took = $now - ($wk->{told_at} // $now);
      next unless $wk->{told} eq 'retire' && $took > $grace + KILL_GRACE;
      $self->log(error => sprintf 'worker %d (pid %d) is still retiring after %.0f s (shutdown_timeout %s + %d): '
        . 'killing it', $wk->{slot}, $wk->{pid}, $took, $grace, KILL_GRACE);
    }
    else {
      next if !$limit || $self->{stopping} || !$wk->{ready} || $now - $wk->{beat} <= $limit;
      $self->log(error => sprintf 'worker %d (pid %d) sent no heartbeat for %.0f s (its event loop is blocked): '
        . 'killing it', $wk->{slot}, $wk->{pid}, $now - $wk->{beat});
    }
    kill 'KILL', $wk->{pid};
    $wk->{killed} = 1;    # (reaped soon; not killed twice)
  }
}

# How long until the master looks again: until the next respawn is due, at most
# MAX_WAIT (a stop's deadline passed: the workers left are killed)
sub _next_wait ($self) {
  my $wait = MAX_WAIT;
  my $now = Time::HiRes::time();
  for my $s (values %{$self->{slots}}) {
    next unless defined $s->{due} && $s->{due} > $now;
    $wait = $s->{due} - $now if $s->{due} - $now < $wait;
  }
  if ($self->{stopping} && $self->{kill_at}) {
    kill 'KILL', keys %{$self->{workers}} if $now >= $self->{kill_at} && !$self->{killed}++;
  }
  return $wait < 0.01 ? 0.01 : $wait;
}

# ---- signals -------------------------------------------------------------------

sub _signal ($self, $sig) {
  if ($sig eq 'USR1') {
    # Log rotation: each worker reopens the access log file
    $self->log(info => 'SIGUSR1 received: the workers reopen the access log');
    kill 'USR1', keys %{$self->{workers}};
  }
  elsif ($sig eq 'INT' || $sig eq 'TERM' || $sig eq 'QUIT') {
    $self->log(info => "SIG$sig received: stopping " . keys(%{$self->{workers}}) . ' worker(s)');
    $self->_stop(1);
  }
  elsif ($self->{stopping}) { }
  elsif ($sig eq 'USR2') { $self->_upgrade }
  elsif ($sig eq 'HUP') {
    $self->log(info => 'SIGHUP received: replacing the workers');
    $self->{gen}++;
    $_->{fails} = 0, delete $_->{due} for values %{$self->{slots}};
  }
  elsif ($sig eq 'TTIN') {
    $self->{n}++;
    $self->log(info => "SIGTTIN received: $self->{n} worker(s)");
  }
  elsif ($sig eq 'TTOU') {
    if ($self->{n} > 1) { $self->{n}--; $self->log(info => "SIGTTOU received: $self->{n} worker(s)") }
    else { $self->log(info => 'SIGTTOU received: keeping the last worker') }
  }
}

# Graceful stop: every worker finishes its in-flight work; asked again, the workers
# are told again (and close their connections at once). $own: the master stops of its
# own accord (a signal, workers that cannot start): once done, it stops the loop too,
# as a single process does on a signal.
sub _stop ($self, $own = 0) {
  my $again = $self->{stopping}++;
  $self->{stop_loop} ||= $own;
  $self->{kill_at} //= Time::HiRes::time() + $self->{server}->option('shutdown_timeout') + KILL_GRACE;
  for my $wk (values %{$self->{workers}}) {
    if ($again) { kill 'TERM', $wk->{pid}; next }
    $self->_tell($wk, 'stop');
  }
}

# Every worker is gone: the master lets go of the loop, closes the listening sockets
# (after an upgrade the socket files are the new master's) and is finished
sub _finish ($self) {
  $self->{finished} = 1;
  my $loop = $self->{loop};
  $self->_leave_loop;
  close $_ for grep { $_ } delete @$self{qw(rpipe wpipe)};
  $self->{server}->close_listeners(keep_files => $self->{handed_over});
  $self->log(info => 'all workers stopped; master exiting');
  $self->{done}->done($self->{status});
  $loop->stop if $self->{stop_loop};
}

# What the master watches on its loop, let go (in a worker, just after the fork: the
# parent's loop is never run there, but some loop libraries keep one set of watches
# per process, which the worker's own loop would run; there a loop that complains
# about the parent's kernel state is let be)
sub _leave_loop ($self) {
  my $loop = $self->{loop};
  my @gone = (
    $self->{rpipe} ? sub { $loop->unwatch_io(handle => $self->{rpipe}, on_read_ready => 1) } : (),
    $self->{timer} ? sub { $loop->unwatch_time(delete $self->{timer}) } : (),
    map({ my $pid = $_; sub { $loop->unwatch_process($pid) } } keys %{$self->{workers}}),
  );
  if (my $succ = $self->{successor}) {
    push @gone, sub { $loop->unwatch_process($succ->{pid}) };
    if (my $r = delete $succ->{r}) { push @gone, sub { $loop->unwatch_io(handle => $r, on_read_ready => 1); close $r } }
  }
  push @gone, sub { $self->{signals}->forget_signals } if $self->{signals};
  for my $undo (@gone) {
    if ($$ == $self->{pid}) { $undo->() }
    else { eval { $undo->(); 1 } }
  }
}

# ---- the USR2 upgrade ------------------------------------------------------------

# SIGUSR2: a new master is started from the same command line (new Perl code,
# modules, server code) with the listening sockets inherited (PAGI::Server::Handoff);
# it starts its own workers, and once they all serve it says so on a pipe, and this
# master retires: its workers retire as after HUP (no new connections, in-flight
# requests finish) and it exits 0. Until then this master and its workers serve on,
# so a new master that fails leaves them serving.
sub _upgrade ($self) {
  my $succ = $self->{successor};
  return $self->log(warn => "SIGUSR2 ignored: an upgrade is already under way (new master pid $succ->{pid})")
    if $succ;
  my $server = $self->{server};
  my ($pid, $r) = eval { PAGI::Server::Handoff::spawn_successor(@{$server->listening_handles}) };
  return $self->log(error => 'SIGUSR2: cannot start a new master: ' . ($@ =~ s/\s+\z//r)) unless $pid;
  $r->blocking(0);
  $self->{successor} = {pid => $pid, r => $r, buf => ''};
  $self->_watch_exit($pid);
  weaken(my $weak = $self);
  $self->{loop}->watch_io(handle => $r, on_read_ready => sub {
    return unless $weak && $$ == $weak->{pid};
    $weak->_successor_says;
    $weak->_step;
  });
  $self->log(info => "SIGUSR2 received: started a new master (pid $pid) on the same sockets; "
    . 'this one serves until its workers are ready');
}

sub _successor_says ($self) {
  my $succ = $self->{successor} or return;
  my $n = sysread($succ->{r}, $succ->{buf}, 64, length $succ->{buf});
  return if !defined $n && ($!{EAGAIN} || $!{EINTR});
  my $ready = $succ->{buf} =~ /\Aready\n/;
  return if $n && !$ready;
  # "ready", or closed without it: the new master failed (its exit says how)
  my $r = delete $succ->{r};
  $self->{loop}->unwatch_io(handle => $r, on_read_ready => 1);
  close $r;
  return unless $ready;
  $succ->{ready} = 1;
  $self->_handover;
}

sub _successor_exited ($self, $raw) {
  my $succ = delete $self->{successor};
  my $how = $raw & 127 ? 'was killed by signal ' . ($raw & 127) : 'exited with status ' . ($raw >> 8);
  return $self->log(info => "the new master (pid $succ->{pid}) $how") if $succ->{ready};
  $self->log(error => "upgrade failed: the new master (pid $succ->{pid}) $how before its workers served; "
    . "this master (pid $$) serves on");
}

# The new master serves: every worker retires (as after HUP), then this master exits 0
sub _handover ($self) {
  return if $self->{stopping};
  $self->log(info => "the new master (pid $self->{successor}{pid}) serves: this master (pid $$) and its "
    . keys(%{$self->{workers}}) . ' worker(s) retire');
  $self->{handed_over} = 1;
  $self->{stopping} = 1;
  $self->{stop_loop} = 1;
  $self->{kill_at} //= Time::HiRes::time() + $self->{server}->option('shutdown_timeout') + KILL_GRACE;
  $self->_tell($_, 'retire') for values %{$self->{workers}};
}

# ---- a worker ----------------------------------------------------------------------

# In the forked child: the server serves as worker $slot, on a loop of its own (its
# lifespan with is_worker and worker_num, then accept on the shared sockets).
# $notify->(WORD) tells the master; $early->() is a stop signal that came before the
# worker's own handlers. Returns the exit status (STARTUP_FAILED when the application
# or its lifespan startup fails).
sub _worker ($self, $slot, $notify, $early) {
  my $server = $self->{server};
  my $master = getppid;
  my $heartbeat = $server->option('heartbeat_timeout');
  my $max = $server->option('max_requests');
  my ($loop, $beat_at) = (undef, 0);
  # Once a second: stop when the master is gone, retire after max_requests, and
  # (heartbeat_timeout) tell the master this loop still turns
  my $tick = sub {
    return unless $server->is_running;
    if (getppid != $master) {
      $server->log(warn => 'the master process is gone: stopping');
      return $server->shutdown->on_done(sub { $loop->stop });
    }
    $server->retire if $max && $server->served >= $max;
    if ($heartbeat && time - $beat_at >= $heartbeat / 5) {
      $beat_at = time;
      $notify->('beat');
    }
  };
  $loop = $server->as_worker($slot, $notify, $tick);
  if (!eval { $server->listen->get; 1 }) {
    $server->log(error => $@ =~ s/\s+\z//r);
    return STARTUP_FAILED;
  }
  my $signals = PAGI::Server::Process->new(log => sub ($level, $msg) { $server->log($level, $msg) });
  my $stop = sub ($soft) { $server->shutdown(soft => $soft)->on_done(sub { $loop->stop }) };
  $signals->on_signals($loop, [qw(INT TERM)], sub ($sig) { $server->log(debug => "SIG$sig received"); $stop->(0) });
  # The master's "retire": finish in-flight work while the other workers serve on
  $signals->on_signals($loop, ['USR2'], sub ($sig) { $server->log(debug => 'retiring'); $stop->(1) });
  $signals->on_signals($loop, ['USR1'], sub ($sig) { $server->reopen_logs });
  $notify->('ready');
  if (my $sig = $early->()) { $signals->queue(sub ($s) { $stop->($s eq 'USR2' ? 1 : 0) }, $sig) }
  $loop->run;
  $server->flush_logs;
  $server->log(debug => 'stopped after ' . $server->served . ' request(s)');
  return 0;
}

1;

=head1 NAME

PAGI::Server::Prefork - the master process of a pre-forked PAGI::Server

=head1 DESCRIPTION

Internal; used by C<< PAGI::Server->listen >> (and so C<run>) when C<workers> is 1 or
more: C<new(server =E<gt> $server, workers =E<gt> $n, loop =E<gt> $loop)>, C<start>,
C<stop> (graceful; again: at once), C<stop_now>, C<signal($name)> (one that came
before C<start>), C<finished> (a Future of the exit status), C<status>.

The server binds every listening socket once, and the master forks C<workers>
processes that share them (the kernel gives each new connection to one worker that
accepts it). Each worker makes a fresh L<IO::Async> loop of its own (C<loop_type>;
never the parent's) and TLS context after the fork, runs lifespan with C<is_worker
=E<gt> 1> and C<worker_num> 1..N, then accepts. The master never runs the
application: it runs on the loop the server was added to (an embedding program's,
or the plain one C<run> makes), where it watches a pipe the workers write to
(C<ready>, C<retire>, C<beat>), their exits (C<watch_process>), its signals, and one
timer. When it stops of its own accord (a signal, workers that cannot start, an
upgrade that took over) it stops that loop once the workers are gone, as a single
process does; a stop asked by C<shutdown> only completes its Future. With C<heartbeat_timeout>,
a worker that sent no C<beat> for that long is killed (its loop is blocked) and
started again; a retiring worker still there C<shutdown_timeout> + 30 s after it was
told is killed too.

A worker that dies unexpectedly is started again in the same slot: at once if it had
lived 10 s or more, otherwise after a delay that starts at 0.1 s and doubles up to
5 s, so an application that crashes at once costs a few forks a second at most. If
lifespan startup fails in the first workers (none ever became ready), the master
stops and exits 1.

=head2 Signals

  master   TERM, INT, QUIT  graceful stop: workers finish in-flight requests
                            (shutdown_timeout), run lifespan shutdown, exit; the
                            master exits 0 once all are gone. A second signal makes
                            the workers close their connections at once; workers
                            still alive shutdown_timeout + 30 s later are killed.
           HUP              graceful restart: a new worker is started for each slot;
                            each old worker retires once its replacement is ready
           TTIN / TTOU      one worker more / fewer (never fewer than 1)
           USR1             every worker reopens the access log file
           USR2             upgrade: a new master from the same command line,
                            on the same sockets; once its workers are ready this
                            master and its workers retire (exit 0); if it fails,
                            they serve on (see PAGI::Server, SIGNALS)
  worker   TERM, INT        graceful stop
           USR2             retire (sent by the master): stop accepting, finish the
                            in-flight requests, close idle keep-alive connections
                            after their next response or idle timeout, exit

=cut
