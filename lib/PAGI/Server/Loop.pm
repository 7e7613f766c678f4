package PAGI::Server::Loop;
use strict;
use warnings;
use experimental 'signatures';
use Scalar::Util ();
use Carp ();
use IO::Async::Loop;

our $VERSION = '0.001';

# Which IO::Async loop a server runs on: a loop name (loop_type) to its class, the
# loops installed, a loop made for this process, and whether a loop waits inside EV.

# The loop for loop_type (a name like 'Epoll', in any case: upstream writes 'EPoll',
# or a full class; none: IO::Async's own choice, Epoll when installed). It is
# IO::Async's one shared loop, so an app that calls IO::Async::Loop->new (even while
# its file loads) gets the server's loop. $fresh (a forked worker): a new loop, never
# one the parent made (a loop library the parent loaded must not share its kernel
# state with the workers: EV makes its default loop, an epoll set and a signal
# eventfd, when it loads).
sub make ($type, $fresh = 0) {
  if ($fresh) {
    undef $IO::Async::Loop::ONE_TRUE_LOOP;
    EV::default_loop()->loop_fork if $INC{'EV.pm'};
  }
  my $shared = $IO::Async::Loop::ONE_TRUE_LOOP;
  return IO::Async::Loop->new unless defined $type && length $type;
  my $class = class_of($type);
  return $shared if $shared && ref $shared eq $class;
  my $loop = $class->new;
  $IO::Async::Loop::ONE_TRUE_LOOP = $loop;
  return $loop;
}

# The loop PAGI::Server->run makes for the master of pre-forked workers: loop_type's
# when it is one of IO::Async's own (Epoll, Poll, Select: no state of an event library
# that the forked workers would carry), else Epoll (when installed) or Poll; never
# IO::Async's shared loop, so that neither the workers (which make theirs,
# loop_type's, after the fork) nor the application find it
sub for_master ($type) {
  my $class = defined $type && length $type ? class_of($type) : '';
  $class = eval { class_of('Epoll') } // class_of('Poll') unless $class =~ /\AIO::Async::Loop::(?:Epoll|Poll|Select)\z/;
  return $class->new;
}

# The IO::Async::Loop class a loop name stands for, loaded; dies with one line naming
# the module and the installed loops when it is not installed
sub class_of ($type) {
  Carp::croak("PAGI::Server: Invalid loop_type '$type': must contain only letters, digits and ::")
    unless $type =~ /\A[A-Za-z][A-Za-z0-9_]*(?:::[A-Za-z][A-Za-z0-9_]*)*\z/;
  my $class = $type =~ /::/ ? $type : "IO::Async::Loop::$type";
  if ($type !~ /::/) {
    # Match the installed loop's spelling (EPoll -> Epoll)
    my ($found) = grep { lc $_ eq lc $type } installed();
    $class = "IO::Async::Loop::$found" if $found;
  }
  (my $file = "$class.pm") =~ s{::}{/}g;
  return $class if $INC{$file};
  if (!eval { require $file; 1 }) {
    my $err = $@;
    die "PAGI::Server: cannot load the loop $class: " . ($err =~ s/\s+\z//r) . "\n"
      unless $err =~ /\ACan't locate \Q$file\E in \@INC/;
    die "PAGI::Server: the loop '$type' needs $class, which is not installed; installed loops: "
      . join(', ', installed()) . "\n";
  }
  return $class;
}

# What is wrong with a loop_type (not a loop name, not installed), or undef (the
# option table's check: PAGI::Server->new refuses it at once)
sub type_error ($type) {
  return undef if eval { class_of($type); 1 };
  my $err = $@ =~ s/\APAGI::Server: //r =~ s/ at \S+ line \d+\.?\n?\z//r =~ s/\s+\z//r;
  return $err =~ /loop_type/ ? $err : "$err (loop_type)";
}

# The IO::Async::Loop::* classes found in @INC (short names)
sub installed {
  my %seen;
  for my $dir (grep { !ref } @INC) {
    opendir(my $dh, "$dir/IO/Async/Loop") or next;
    for (readdir $dh) { $seen{$1} = 1 if /\A(\w+)\.pm\z/ }
  }
  delete $seen{$_} for qw(Select Poll);
  return ((sort keys %seen), 'Poll', 'Select');
}

# Does this loop wait inside EV (libev's C loop)?
sub waits_in_ev ($loop) {
  return 0 unless $INC{'EV.pm'};
  return 1 if $loop->isa('IO::Async::Loop::EV');
  return $loop->isa('IO::Async::Loop::Mojo') && Mojo::IOLoop->singleton->reactor->isa('Mojo::Reactor::EV');
}

# The loop's own Linux::Epoll set, when the loop is IO::Async::Loop::Epoll (whose
# loop_once waits on that set and calls whatever callback each ready handle was added
# with), else undef. A plain connection adds its socket there directly: IO::Async's
# watch_io and unwatch_io cost about 70,000 instructions a connection (their
# bookkeeping, and a getpid for each: IO::Async checks for a fork), Linux::Epoll's add
# and delete about 4,000. A handle added there is never one IO::Async watches (each
# socket is either a connection's or IO::Async's), so the two stay out of each other's
# way. Set PAGI_SERVER_NO_DIRECT_EPOLL=1 to go through watch_io always.
sub epoll_of ($loop) {
  return undef if $ENV{PAGI_SERVER_NO_DIRECT_EPOLL} || !$loop->isa('IO::Async::Loop::Epoll');
  # A loop made before a fork (IO::Async's one shared loop, in a child that did not ask
  # for a fresh one) gets its own epoll set at its first call after the fork: have it
  # now, before the set is taken
  $loop->post_fork if ($loop->{pid} // $$) != $$;
  my $epoll = $loop->{epoll};
  return Scalar::Util::blessed($epoll) && $epoll->isa('Linux::Epoll') && $epoll->can('add') ? $epoll : undef;
}

# What a loop of this type loads on first use, loaded now (before privileges drop,
# while every directory of @INC can be read): a loop is made and thrown away (its
# class, IO::Async's choice or loop_type's; Metrics::Any's adapter), the timer queue
# a loop loads with its first timer, and the signal table. Loops that wrap another event system
# (Mojo, Glib, EV) are only loaded: their underlying loop is shared.
sub preload ($type) {
  my $class = defined $type && length $type ? class_of($type) : undef;
  if (!$class || $class =~ /\AIO::Async::Loop::(?:Epoll|Poll|Select)\z/) {
    my $probe = $class ? $class->new : IO::Async::Loop->really_new;
    undef $probe;
  }
  require IO::Async::Internals::TimeQueue;
  require File::Spec;
  # The signal numbers IO::Async looks up when a master watches its workers' exits
  # (%Config's sig_name, read from Config_heavy.pl on first use)
  require Config;
  my $names = $Config::Config{sig_name};
}

1;

=head1 NAME

PAGI::Server::Loop - which IO::Async loop a PAGI::Server runs on

=head1 DESCRIPTION

Internal. C<make($loop_type, $fresh)>, C<for_master($loop_type)>, C<class_of($name)> (dies naming the module and
the installed loops when a loop is not installed), C<type_error($name)> (the same as a
message, or undef), C<installed()>,
C<waits_in_ev($loop)>, C<epoll_of($loop)>, C<preload($loop_type)>. C<PAGI::Server::loop_class> is
C<class_of>.

=cut
