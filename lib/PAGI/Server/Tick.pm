package PAGI::Server::Tick;
use strict;
use warnings;
use experimental 'signatures';
use Scalar::Util qw(weaken);

our $VERSION = '0.001';

# A code reference run once a second on a loop (the server's coarse clock: deadlines,
# the access log's flush, a worker's heartbeat). It owns its timer; the server starts
# and stops it.
#
#   my $tick = PAGI::Server::Tick->new($loop, sub { ... });
#   $tick->stop;

sub new ($class, $loop, $code) {
  my $self = bless {loop => $loop}, $class;
  if (my $fd = _timer_fd()) {
    # A timerfd costs the loop nothing between ticks; an IO::Async timer makes every
    # turn of the loop look at the clock and the timer queue
    $self->{fd} = $fd;
    $loop->watch_io(handle => $fd, on_read_ready => sub { eval { $fd->receive }; $code->() });
    return $self;
  }
  weaken(my $weak = $self);
  my $again;
  $again = sub {
    $code->();
    $weak->{id} = $loop->watch_time(after => 1, code => $again) if $weak && $weak->{id};
  };
  $self->{id} = $loop->watch_time(after => 1, code => $again);
  return $self;
}

sub stop ($self) {
  my $loop = $self->{loop};
  if (my $fd = delete $self->{fd}) { $loop->unwatch_io(handle => $fd, on_read_ready => 1) }
  $loop->unwatch_time(delete $self->{id}) if $self->{id};
}

# A non-blocking timerfd firing every second (Linux::FD, when installed), or undef
sub _timer_fd {
  return undef unless eval { require Linux::FD::Timer; 1 };
  return eval {
    my $t = Linux::FD::Timer->new('monotonic');
    $t->blocking(0);
    $t->set_timeout(1, 1);
    $t;
  };
}

1;

=head1 NAME

PAGI::Server::Tick - a server's once-a-second tick

=head1 DESCRIPTION

Internal. C<< PAGI::Server::Tick->new($loop, $code) >> runs C<$code> once a second on
C<$loop> (through a timerfd when L<Linux::FD> is installed, else the loop's timer)
until C<stop>.

=cut
