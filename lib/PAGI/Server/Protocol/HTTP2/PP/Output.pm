package PAGI::Server::Protocol::HTTP2::PP::Output;
use strict;
use warnings;
use Exporter 'import';
use Protocol::HTTP2::HeaderCompression qw(headers_encode);
use PAGI::Server::Protocol::HTTP2::PP::Block ();

our $VERSION = '0.001';

# What the pure-Perl HTTP/2 session writes: the frames it queued, each stream's
# response (its head, its body framed as DATA within the peer's windows, its
# trailers) and the bytes `output` hands out. It owns its state; the session calls
# it and acts on what it returns (nothing here knows the session).
#
#   my $out = PAGI::Server::Protocol::HTTP2::PP::Output->new;
#   $out->queue(frame(RST_STREAM, 0, $id, pack 'N', $code), rst => $id, code => $code);
#   while (my $item = $out->next_frame) { ...; $out->append($item->[0]) }   # [bytes, tags]
#   my $ended = $out->data_frame;       # undef: none; else the id of the stream it ended, or 0
#   my $bytes = $out->take($max);
#
# A queued frame carries tags, what its sending does: the session reads them, but
# for `head` (the stream's DATA may follow), which it passes back (head_written).

# RFC 9113 6: frame types and flags, named here where frames are made (the session
# reads them with these names)
use constant {
  DATA => 0, HEADERS => 1, PRIORITY => 2, RST_STREAM => 3, SETTINGS => 4, PUSH_PROMISE => 5,
  PING => 6, GOAWAY => 7, WINDOW_UPDATE => 8, CONTINUATION => 9,
  F_END_STREAM => 1, F_ACK => 1, F_END_HEADERS => 4, F_PADDED => 8, F_PRIORITY => 0x20,
};
use constant {
  MAX_WINDOW   => 2**31 - 1,    # a flow-control window's largest size (RFC 9113 6.9.1)
  DATA_PAYLOAD => 16384,        # nghttp2 frames DATA in at most 16 KiB
};

# (one list: a request carrying one of them is malformed)
my $CONNECTION_SPECIFIC = \%PAGI::Server::Protocol::HTTP2::PP::Block::CONNECTION_SPECIFIC;

our @EXPORT_OK = qw(frame app_fields DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY WINDOW_UPDATE
  CONTINUATION F_END_STREAM F_ACK F_END_HEADERS F_PADDED F_PRIORITY MAX_WINDOW);
our %EXPORT_TAGS = (frames => [grep { $_ ne 'app_fields' } @EXPORT_OK]);

sub frame { my ($type, $flags, $id, $payload) = @_; return pack('NCN', (length($payload) << 8) | $type, $flags, $id) . $payload }

sub new {
  my ($class) = @_;
  return bless {
    out => '',
    # [frame, tags]: ours first (SETTINGS, acknowledgements), then the others
    urgent => [], queue => [],
    # each stream's response: {id, out, started, head_sent, ended, no_body, trailers,
    # scheduled, blocked, window}; the ones with DATA to frame, in turn
    streams => {}, ready => [],
    # the connection's send window; the peer's SETTINGS_INITIAL_WINDOW_SIZE and
    # SETTINGS_MAX_FRAME_SIZE
    window => 65535, initial => 65535, frame => 16384,
    # Protocol::HTTP2's HPACK encoder context
    enc => {header_table => [], ht_size => 0, max_ht_size => 4096, settings => {1 => 4096}},
  }, $class;
}

# ---- queued frames and the bytes out ----------------------------------------------------

sub urgent { my $self = shift; push @{$self->{urgent}}, [@_]; return }
sub queue  { my $self = shift; push @{$self->{queue}}, [@_]; return }

# The next queued frame and its tags, taken off the queue; undef when none
sub next_frame { return shift @{$_[0]{urgent}} // shift @{$_[0]{queue}} }

sub append { $_[0]{out} .= $_[1]; return }
sub size   { return length $_[0]{out} }
sub take   { return substr($_[0]{out}, 0, $_[1], '') }

# Something to write: a frame queued, or DATA ready within the connection's window
sub pending {
  my ($self) = @_;
  return @{$self->{urgent}} || @{$self->{queue}} || (@{$self->{ready}} && $self->{window} > 0) ? 1 : 0;
}

# ---- the peer's settings and windows ------------------------------------------------------

# SETTINGS_HEADER_TABLE_SIZE (the encoder's table) and SETTINGS_MAX_FRAME_SIZE
sub table_size { $_[0]{enc}{settings}{1} = $_[1]; return }
sub max_frame  { $_[0]{frame} = $_[1]; return }

# SETTINGS_INITIAL_WINDOW_SIZE: every stream's window moves by the change; false when
# one would overflow
sub initial_window {
  my ($self, $v) = @_;
  my $delta = $v - $self->{initial};
  for my $tx (values %{$self->{streams}}) {
    return 0 if $tx->{window} + $delta > MAX_WINDOW;
    $tx->{window} += $delta;
  }
  $self->{initial} = $v;
  return 1;
}

# WINDOW_UPDATE of the connection (id 0) or of a stream; false when the window would
# overflow
sub window_update {
  my ($self, $id, $inc) = @_;
  my $w = $id ? $self->{streams}{$id} : $self;
  return 0 if MAX_WINDOW - $inc < $w->{window};
  $w->{window} += $inc;
  return 1;
}

# Streams whose window opened are ready again
sub unblock {
  my ($self) = @_;
  for my $tx (grep { $_->{blocked} && $_->{window} > 0 } values %{$self->{streams}}) {
    $tx->{blocked} = 0;
    push @{$self->{ready}}, $tx unless $tx->{scheduled}++;
  }
  return;
}

# ---- the streams' responses ----------------------------------------------------------------

sub open_stream {
  my ($self, $id) = @_;
  $self->{streams}{$id} = {id => $id, out => '', started => 0, head_sent => 0, ended => 0, trailers => undef,
    scheduled => 0, window => $self->{initial}};
  return;
}

sub close_stream {
  my ($self, $id) = @_;
  my $tx = delete $self->{streams}{$id} or return;
  @{$self->{ready}} = grep { $_ != $tx } @{$self->{ready}};
  return;
}

# The app's fields of a response head ($server_value defined: the Server field's value,
# '' for none) or of trailers (undef): validated (check_headers' rules and messages),
# lowercased, connection-specific ones dropped, the date and server added to a head
# unless given; ($fields, $content_length) or (undef, $message)
sub app_fields {
  my ($headers, $server_value) = @_;
  my $head = defined $server_value;
  require PAGI::Server::Protocol::HTTP1::PP;
  my $err = $head ? PAGI::Server::Protocol::HTTP1::PP::check_headers($headers)
    : PAGI::Server::Protocol::HTTP1::PP::_check_trailers($headers);
  return (undef, $err) if defined $err;
  my (@fields, $date, $server, $cl);
  for my $h (@{$headers // []}) {
    my $n = lc($h->[0] // '');
    my $v = $h->[1] // '';
    utf8::downgrade($n, 1);
    utf8::downgrade($v, 1);
    next if $CONNECTION_SPECIFIC->{$n} || ($n eq 'te' && lc($v =~ s/\A[ \t]+|[ \t]+\z//gr) ne 'trailers');
    $date = 1 if $n eq 'date';
    $server = 1 if $n eq 'server';
    $cl = 0 + $v if $n eq 'content-length';
    push @fields, [$n, $v];
  }
  if ($head) {
    push @fields, ['date', PAGI::Server::Protocol::HTTP1::PP::_date_value()] unless $date;
    push @fields, ['server', $server_value] if !$server && length $server_value;
  }
  return (\@fields, $cl);
}

# The response's head ($fields: from app_fields) queued with the tags the session
# needs; undef, or the kind of the app's mistake
sub respond {
  my ($self, $id, $status, $fields, $end) = @_;
  my $tx = $self->{streams}{$id};
  return 'response_started' if $tx->{started};
  unshift @$fields, [':status', 0 + $status];
  if ($status < 200) {
    $self->queue($self->_headers_frames($id, $fields, 0), st => $id);
    return undef;
  }
  $tx->{started} = 1;
  $tx->{no_body} = $tx->{ended} = $end ? 1 : 0;
  $self->queue($self->_headers_frames($id, $fields, $end), head => $id, st => $id, ($end ? (end => $id) : ()));
  return undef;
}

sub send_data {
  my ($self, $id, $data, $end) = @_;
  my $tx = $self->{streams}{$id};
  return 'response_not_started' unless $tx->{started};
  return 'response_ended' if $tx->{ended};
  $tx->{out} .= $data // '';
  $tx->{ended} = $end ? 1 : 0;
  $self->_schedule($tx);
  return undef;
}

sub send_trailers {
  my ($self, $id, $fields) = @_;
  my $tx = $self->{streams}{$id};
  return 'response_not_started' unless $tx->{started};
  return 'response_ended' if $tx->{ended};
  $tx->{ended} = 1;
  $tx->{trailers} = $fields if @$fields;
  $self->_schedule($tx);
  return undef;
}

# The head went out: the body can follow
sub head_written {
  my ($self, $id) = @_;
  my $tx = $self->{streams}{$id};
  $tx->{head_sent} = 1;
  $self->_schedule($tx) if !$tx->{no_body} && ($tx->{ended} || length $tx->{out});
  return;
}

# The stream is being reset: what it had to send is dropped
sub cancel {
  my ($self, $id) = @_;
  my $tx = $self->{streams}{$id};
  $tx->{out} = '';
  $tx->{ended} = 1;
  $tx->{trailers} = undef;
  @{$self->{ready}} = grep { $_ != $tx } @{$self->{ready}};
  $tx->{scheduled} = 0;
  return;
}

sub buffered {
  my ($self, $id) = @_;
  my $tx = $self->{streams}{$id} or return 0;
  return length $tx->{out};
}

# A stream with something to send joins the DATA queue (once its head is written)
sub _schedule {
  my ($self, $tx) = @_;
  push @{$self->{ready}}, $tx if $tx->{head_sent} && !$tx->{blocked} && !$tx->{scheduled}++;
  return;
}

# One DATA frame from the first stream ready, within the windows, written; undef when
# none, else the id of the stream whose END_STREAM it wrote, or 0. Trailers are queued
# as HEADERS instead (an empty DATA frame before them is not written).
sub data_frame {
  my ($self) = @_;
  return undef if $self->{window} <= 0;
  while (my $tx = $self->{ready}[0]) {
    my $n = DATA_PAYLOAD;
    $n = $tx->{window} if $tx->{window} < $n;
    $n = $self->{window} if $self->{window} < $n;
    $n = $self->{frame} if $self->{frame} < $n;
    if ($n <= 0) {
      # flow control: the stream waits for a WINDOW_UPDATE (and keeps its place)
      shift @{$self->{ready}};
      $tx->{scheduled} = 0;
      $tx->{blocked} = 1;
      next;
    }
    my $take = length $tx->{out} < $n ? length $tx->{out} : $n;
    if (!$take && !$tx->{ended}) {
      shift @{$self->{ready}};
      $tx->{scheduled} = 0;
      next;
    }
    my $chunk = substr($tx->{out}, 0, $take, '');
    my ($flags, $trailers) = (0);
    if (!length $tx->{out} && $tx->{ended}) {
      $trailers = delete $tx->{trailers};
      $flags = F_END_STREAM unless $trailers;
      shift @{$self->{ready}};
    }
    $tx->{window} -= $take;
    $self->{window} -= $take;
    my $id = $tx->{id};
    $self->queue($self->_headers_frames($id, $trailers, 1), end => $id, st => $id) if $trailers;
    $self->append(frame(DATA, $flags, $id, $chunk)) unless $trailers && !$take;
    return $flags ? $id : 0;
  }
  return undef;
}

# HEADERS (and CONTINUATION) frames of a field list
sub _headers_frames {
  my ($self, $id, $fields, $end) = @_;
  my $block = headers_encode($self->{enc}, [map { @$_ } @$fields]);
  my $max = $self->{frame};
  my $first = substr($block, 0, $max, '');
  my $out = frame(HEADERS, ($end ? F_END_STREAM : 0) | (length $block ? 0 : F_END_HEADERS), $id, $first);
  while (length $block) {
    my $part = substr($block, 0, $max, '');
    $out .= frame(CONTINUATION, length $block ? 0 : F_END_HEADERS, $id, $part);
  }
  return $out;
}

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2::PP::Output - what the pure-Perl HTTP/2 session writes

=head1 DESCRIPTION

Internal to L<PAGI::Server::Protocol::HTTP2::PP>. One object per connection: the
control frames the session queued (its SETTINGS and acknowledgements first), each
stream's response (the head, HPACK-encoded with Protocol::HTTP2's encoder; the body,
framed as DATA of at most 16384 bytes within the stream's and the connection's send
windows and the peer's SETTINGS_MAX_FRAME_SIZE; the trailers) and the bytes the
session's C<output($max)> hands out. It also names the frame types and flags (RFC
9113 6) and makes frames (C<frame>). The session decides which queued frame is
written and what writing it does; this object never calls the session.

=cut
