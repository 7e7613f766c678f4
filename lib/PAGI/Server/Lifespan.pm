package PAGI::Server::Lifespan;
use strict;
use warnings;
use experimental 'signatures';
use Scalar::Util qw(blessed);
use Future;

our $VERSION = '0.001';

# The lifespan scope of a server process: startup before the first connection is
# accepted, shutdown after the last one closed. PAGI::Server makes one per process
# (a worker its own) and calls startup and shutdown; the state the app puts in it
# is the server's, copied into every scope.
#
#   my $life = PAGI::Server::Lifespan->new(app => $app, state => \%state, mode => 'auto',
#     timeout => 30, worker_num => undef, loop => $loop, log => sub ($level, $msg) { ... });
sub new ($class, %arg) { bless {%arg}, $class }

# The startup: a Future that fails only when the app says startup failed (or, with
# mode on, declines lifespan), or when it takes longer than timeout (0: no limit).
# Mode off: the app never sees a lifespan scope.
sub startup ($self) {
  return Future->done if $self->{mode} eq 'off';
  my $loop = $self->{loop};
  my $startup = $loop->new_future;
  my $shutdown_evt = $self->{shutdown_event} = $loop->new_future;
  my $received = 0;
  my $receive = sub {
    return Future->done({type => 'lifespan.startup'}) if !$received++;
    return $shutdown_evt;
  };
  my $send = sub ($ev) {
    my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
    if ($type eq 'lifespan.startup.complete' || $type eq 'lifespan.startup.failed') {
      return Future->fail("$type sent twice or too late\n") if $startup->is_ready;
      $self->{supported} = 1;
      if ($type eq 'lifespan.startup.complete') { $startup->done }
      else { $startup->fail($ev->{message} // '') }
      return Future->done;
    }
    if ($type eq 'lifespan.shutdown.complete' || $type eq 'lifespan.shutdown.failed') {
      my $f = $self->{shutdown} or return Future->fail("$type before lifespan.shutdown\n");
      $self->{log}->(error => 'lifespan shutdown failed: ' . ($ev->{message} // ''))
        if $type eq 'lifespan.shutdown.failed';
      $f->done unless $f->is_ready;
      return Future->done;
    }
    return Future->fail("unknown event type '$type' for a lifespan scope\n");
  };
  my $num = $self->{worker_num};
  my $scope = {
    type  => 'lifespan',
    pagi  => {version => '0.3', spec_version => '0.3', is_worker => $num ? 1 : 0, worker_num => $num},
    state => $self->{state},
  };
  my $app_f = eval { $self->{app}->($scope, $receive, $send) };
  $app_f = Future->fail($@ || "application did not return a Future\n")
    unless blessed $app_f && $app_f->can('on_ready');
  $self->{app_future} = $app_f;
  $app_f->on_ready(sub ($f) {
    if (!$startup->is_ready) {
      # Raising or returning before startup means: no lifespan support (fatal when
      # mode is on)
      my $why = $f->is_failed ? ': ' . (($f->failure)[0] =~ s/\s+\z//r) : '';
      $self->{supported} = 0;
      return $startup->fail('lifespan_mode is on, but the application does not support lifespan'
        . ($why || ' (it returned without signalling startup)')) if $self->{mode} eq 'on';
      # (an exception's message is logged: a startup that failed is not hidden)
      $self->{log}->(info => 'application does not support lifespan, continuing without it'
        . ($why ? " (it raised$why)" : ''));
      $startup->done;
    }
    elsif ($f->is_failed) {
      # (upstream's words: an operator's tooling may look for them)
      $self->{log}->(error => 'Lifespan app failed after startup: ' . (($f->failure)[0] =~ s/\s+\z//r));
    }
    $self->{shutdown}->done if $self->{shutdown} && !$self->{shutdown}->is_ready;
  });
  my $limit = $self->{timeout} or return $startup;
  my $timeout = $loop->delay_future(after => $limit)->then(sub {
    Future->fail("Lifespan startup timed out after $limit s (lifespan_startup_timeout)\n");
  });
  return Future->wait_any($startup, $timeout);
}

# The shutdown, given at most $timeout seconds (0: no limit); done at once when the
# app does not support lifespan or has returned
sub shutdown ($self, $timeout) {
  return Future->done unless $self->{supported} && !$self->{app_future}->is_ready;
  my $loop = $self->{loop};
  my $f = $self->{shutdown} = $loop->new_future;
  $self->{shutdown_event}->done({type => 'lifespan.shutdown'});
  return $f unless $timeout;
  return Future->wait_any($f, $loop->delay_future(after => $timeout));
}

1;

=head1 NAME

PAGI::Server::Lifespan - the lifespan scope of a PAGI::Server process

=head1 DESCRIPTION

Internal. C<new(app, state, mode, timeout, worker_num, loop, log)>, then C<startup>
(a L<Future>: fails when the app reports C<lifespan.startup.failed>, when C<mode> is
C<on> and the app does not support lifespan, or after C<timeout> seconds) and
C<shutdown($timeout)> (a Future done when the app reports shutdown, returns, or the
time is up). The scope has C<pagi> C<is_worker> and C<worker_num>, and the server's
C<state>.

=cut
