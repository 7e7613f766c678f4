package PAGI::Server::Transport;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();

our $VERSION = '0.001';

# The scope's 'pagi.transport' object (PAGI flow control): one per connection,
# shared by the scopes on it. It asks the connection how much output is buffered (and
# holds the connection: a cycle that the connection breaks when it closes); the
# connection calls _high and _drain when its buffer crosses the marks.

# The constructor, a plain function for the connections (an HTTP/2 stream makes one per
# request: no method lookup, no signature to unpack); the callback lists are made when
# a first callback is registered
sub of { bless {conn => $_[0], high => $_[1], low => $_[2], above => 0}, __PACKAGE__ }

sub buffered_amount ($self) {
  my $conn = $self->{conn} or return 0;
  return $conn->write_buffered;
}

sub high_water_mark ($self) { $self->{high} }
sub low_water_mark ($self)  { $self->{low} }

sub on_high_water ($self, $cb) {
  Carp::croak('on_high_water needs a code reference') unless ref $cb eq 'CODE';
  push @{$self->{on_high}}, $cb;
  _run($cb) if $self->{above};    # already there: at once
  return;
}

sub on_drain ($self, $cb) {
  Carp::croak('on_drain needs a code reference') unless ref $cb eq 'CODE';
  push @{$self->{on_drain}}, $cb;
  return;
}

sub _run ($cb) {
  eval { $cb->(); 1 } or warn "PAGI::Server: a pagi.transport callback died: $@";
}

# The buffer reached the high mark / fell below the low mark after it
sub _high ($self) {
  return if $self->{above};
  $self->{above} = 1;
  _run($_) for @{$self->{on_high} || []};
}

sub _drain ($self) {
  return unless $self->{above};
  $self->{above} = 0;
  _run($_) for @{$self->{on_drain} || []};
}

1;

=head1 NAME

PAGI::Server::Transport - the C<pagi.transport> object: output flow control

=head1 METHODS

C<buffered_amount> (bytes queued for the socket, not yet written),
C<high_water_mark> (at or above it a C<$send> waits), C<low_water_mark> (the send is
released below it), C<on_high_water($cb)> and C<on_drain($cb)>: callbacks that fire
once per high/drain cycle, in registration order, and stay registered.
C<on_high_water> runs at once when the buffer is already above the high mark.

=cut
