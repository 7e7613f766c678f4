package PAGI::Server::ConnectionState;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Future;

our $VERSION = '0.001';

# The scope's 'pagi.connection' object: one per request, a plain record that the
# connection updates. It holds no reference back to the connection. An array (one is
# made per request): the connection imports the field indexes with ':fields'.
use constant {
  CS_CONNECTED => 0, CS_STARTED => 1, CS_COMPLETE => 2, CS_REASON => 3,
  CS_ON_DISCONNECT => 4, CS_ON_COMPLETE => 5, CS_FUTURE => 6,
};
use Exporter 'import';
our @EXPORT_OK = qw(CS_CONNECTED CS_STARTED CS_COMPLETE CS_REASON CS_ON_DISCONNECT
  CS_ON_COMPLETE CS_FUTURE);
our %EXPORT_TAGS = (fields => \@EXPORT_OK);

# (PAGI::Server::Connection builds the same array inline: keep the two alike)
sub new ($class) {
  return bless [1, 0, 0], $class;
}

sub is_connected ($self)      { $self->[CS_CONNECTED] }
sub disconnect_reason ($self) { $self->[CS_REASON] }
sub response_started ($self)  { $self->[CS_STARTED] ? 1 : 0 }
sub response_complete ($self) { $self->[CS_COMPLETE] ? 1 : 0 }

sub on_disconnect ($self, $cb) {
  Carp::croak('on_disconnect needs a code reference') unless ref $cb eq 'CODE';
  return if $self->[CS_COMPLETE];
  # A late registration runs at once
  return $self->_run($cb, $self->[CS_REASON]) if defined $self->[CS_REASON];
  push @{$self->[CS_ON_DISCONNECT]}, $cb;
  return;
}

sub on_complete ($self, $cb) {
  Carp::croak('on_complete needs a code reference') unless ref $cb eq 'CODE';
  return if defined $self->[CS_REASON];
  return $self->_run($cb) if $self->[CS_COMPLETE];
  push @{$self->[CS_ON_COMPLETE]}, $cb;
  return;
}

sub disconnect_future ($self) {
  return $self->[CS_FUTURE] //= do {
    my $f = Future->new;
    $f->done($self->[CS_REASON]) if defined $self->[CS_REASON];
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
  return unless $self->[CS_CONNECTED];
  $self->[CS_CONNECTED] = 0;
  return if $self->[CS_COMPLETE];
  $self->[CS_REASON] = $reason;
  $self->[CS_FUTURE]->done($reason) if $self->[CS_FUTURE] && !$self->[CS_FUTURE]->is_ready;
  my $cbs = delete $self->[CS_ON_DISCONNECT];
  delete $self->[CS_ON_COMPLETE];
  $self->_run($_, $reason) for @{$cbs || []};
}

# Clean end: the response was fully handed to the socket
sub _complete ($self) {
  $self->[CS_COMPLETE] = 1;
  delete $self->[CS_ON_DISCONNECT];
  my $cbs = delete $self->[CS_ON_COMPLETE] or return;
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
