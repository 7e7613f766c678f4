package PAGI::Server::ConnectionState;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Future;

our $VERSION = '0.001';

# The scope's 'pagi.connection' object: one per request, a plain record that the
# connection updates. It holds no reference back to the connection.

# (PAGI::Server::Connection builds the same hash inline: keep the two alike)
sub new ($class) {
  return bless {connected => 1, started => 0, complete => 0}, $class;
}

sub is_connected ($self)      { $self->{connected} }
sub disconnect_reason ($self) { $self->{reason} }
sub response_started ($self)  { $self->{started} ? 1 : 0 }
sub response_complete ($self) { $self->{complete} ? 1 : 0 }

sub on_disconnect ($self, $cb) {
  Carp::croak('on_disconnect needs a code reference') unless ref $cb eq 'CODE';
  return if $self->{complete};
  # A late registration runs at once
  return $self->_run($cb, $self->{reason}) if defined $self->{reason};
  push @{$self->{on_disconnect}}, $cb;
  return;
}

sub on_complete ($self, $cb) {
  Carp::croak('on_complete needs a code reference') unless ref $cb eq 'CODE';
  return if defined $self->{reason};
  return $self->_run($cb) if $self->{complete};
  push @{$self->{on_complete}}, $cb;
  return;
}

sub disconnect_future ($self) {
  return $self->{future} //= do {
    my $f = Future->new;
    $f->done($self->{reason}) if defined $self->{reason};
    $f;
  };
}

# A callback that dies must not break the server or the other callbacks
sub _run ($self, $cb, @args) {
  eval { $cb->(@args); 1 } or warn "PAGI::Server: a pagi.connection callback died: $@";
  return;
}

# Abnormal end, in the spec's order: not connected, reason, future, callbacks
sub _disconnect ($self, $reason) {
  return unless $self->{connected};
  $self->{connected} = 0;
  return if $self->{complete};
  $self->{reason} = $reason;
  $self->{future}->done($reason) if $self->{future} && !$self->{future}->is_ready;
  my $cbs = delete $self->{on_disconnect};
  delete $self->{on_complete};
  $self->_run($_, $reason) for @{$cbs || []};
}

# Clean end: the response was fully handed to the socket
sub _complete ($self) {
  $self->{complete} = 1;
  delete $self->{on_disconnect};
  my $cbs = delete $self->{on_complete} or return;
  $self->_run($_) for @$cbs;
}

1;

=head1 NAME

PAGI::Server::ConnectionState - the C<pagi.connection> object of an http scope

=head1 METHODS

C<is_connected>, C<disconnect_reason>, C<on_disconnect($cb)>, C<response_started>,
C<on_complete($cb)>, C<response_complete>, C<disconnect_future>, as the PAGI
specification defines them. After a clean end C<disconnect_reason> stays undef and
only the C<on_complete> callbacks run; after an abnormal end C<is_connected> is false
and the reason is one of the spec's tokens (C<client_closed>, C<read_error>, C<write_error>, C<write_timeout>,
C<client_timeout>, C<protocol_error>, C<body_too_large>, C<server_error>,
C<server_shutdown>).

=cut
