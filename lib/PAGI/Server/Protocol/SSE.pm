package PAGI::Server::Protocol::SSE;
use strict;
use warnings;

our $VERSION = '0.001';

# Server-Sent Events wire format (HTML Living Standard, "event stream"). It only
# formats what the app sends (no peer input), so it has one implementation.

# sse.send: (bytes) or (undef, message)
sub format_event {
  my ($ev) = @_;
  my $data = $ev->{data};
  return (undef, 'sse.send: data is required') unless defined $data;
  return (undef, 'sse.send: data must be a string') if ref $data;
  for my $field (qw(event id)) {
    return (undef, "sse.send: $field must not contain a newline")
      if defined $ev->{$field} && $ev->{$field} =~ /[\r\n]/;
  }
  my $out = defined $ev->{event} ? "event: $ev->{event}\n" : '';
  # One data line per line of the payload, whatever its line endings (split gives
  # no fields for '', but empty data is still one empty line)
  $out .= "data: $_\n" for length $data ? split(/\r\n|\r|\n/, $data, -1) : ('');
  $out .= "id: $ev->{id}\n" if defined $ev->{id};
  if (defined(my $retry = $ev->{retry})) {
    return (undef, 'sse.send: retry must be an integer >= 0') unless $retry =~ /\A[0-9]+\z/;
    $out .= "retry: $retry\n";
  }
  $out .= "\n";
  utf8::encode($out);
  return ($out);
}

# sse.comment / keepalive: every line starts with ':'
sub format_comment {
  my ($comment) = @_;
  $comment = '' unless defined $comment;
  my $out = join '', map { /\A:/ ? "$_\n" : ":$_\n" } split /\r\n|\r|\n/, $comment, -1;
  $out = ":\n" if $out eq '';
  $out .= "\n";
  utf8::encode($out);
  return $out;
}

1;

=head1 NAME

PAGI::Server::Protocol::SSE - the Server-Sent Events wire format

=head1 FUNCTIONS

=head2 format_event(\%event)

The bytes of an C<sse.send> event: C<event:>, one C<data:> line per line of C<data>
(split on CRLF, CR and LF), C<id:>, C<retry:>, then a blank line. Returns
C<(undef, $message)> when C<data> is missing, C<event> or C<id> contains a newline, or
C<retry> is not a non-negative integer.

=head2 format_comment($text)

A comment block (C<:> before each line), as C<sse.comment> and keepalives send.

=cut
