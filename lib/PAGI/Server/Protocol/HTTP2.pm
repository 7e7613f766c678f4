package PAGI::Server::Protocol::HTTP2;
use strict;
use warnings;
use Carp ();
use PAGI::Server::Protocol::Errors;
use PAGI::Server::Protocol::Backend;

our $VERSION = '0.001';

# The HTTP/2 codec seam: new_session from ::PP (Protocol::HTTP2's frame codec and HPACK
# under a session of our own) or ::XS (nghttp2 under Rust), whichever backend
# PAGI::Server::Protocol::Backend chose for all codecs. A session is an object of
# ::PP::Session or ::XS::Session with the same methods (@METHODS).
our @FUNCTIONS = qw(new_session);
our @METHODS = qw(feed events error output respond send_data send_trailers buffered consumed
  reset goaway want_write is_closed open_streams last_stream_id);
our $IMPLEMENTATION = PAGI::Server::Protocol::Backend::install(__PACKAGE__, @FUNCTIONS);
our $SESSION_CLASS = "PAGI::Server::Protocol::HTTP2::${IMPLEMENTATION}::Session";
for my $m (@METHODS) {
  die "$SESSION_CLASS does not implement $m\n" unless $SESSION_CLASS->can($m);
}

# RFC 9113 7 error codes
use constant {
  H2_NO_ERROR => 0, H2_PROTOCOL_ERROR => 1, H2_INTERNAL_ERROR => 2, H2_FLOW_CONTROL_ERROR => 3,
  H2_SETTINGS_TIMEOUT => 4, H2_STREAM_CLOSED => 5, H2_FRAME_SIZE_ERROR => 6,
  H2_REFUSED_STREAM => 7, H2_CANCEL => 8, H2_COMPRESSION_ERROR => 9, H2_CONNECT_ERROR => 10,
  H2_ENHANCE_YOUR_CALM => 11, H2_INADEQUATE_SECURITY => 12, H2_HTTP_1_1_REQUIRED => 13,
};

use constant PREFACE => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

# The settings of new_session and their defaults (the option table's h2_* options
# feed them)
our %DEFAULTS = (
  max_concurrent_streams  => 100,
  initial_window_size     => 65535,
  max_frame_size          => 16384,
  max_header_list_size    => 65536,
  enable_connect_protocol => 1,
  enable_push             => 0,
  rst_rate_limit          => [1000, 33],
  max_headers             => 100,
  upgrade                 => undef,
  upgrade_head            => 0,
);

# What each integer setting may be (RFC 9113 6.5.2 for the SETTINGS values)
my %RANGE = (
  max_concurrent_streams => [0, 2**32 - 1],
  initial_window_size    => [0, 2**31 - 1],
  max_frame_size         => [16384, 2**24 - 1],
  max_header_list_size   => [0, 2**32 - 1],
  max_headers            => [0, 2**53],
);

# The settings completed from %DEFAULTS; misuse croaks, naming new_session
sub session_settings {
  my ($given) = @_;
  $given //= {};
  Carp::croak('new_session: settings must be a hash reference') unless ref $given eq 'HASH';
  my @unknown = grep { !exists $DEFAULTS{$_} } sort keys %$given;
  Carp::croak("new_session: unknown setting(s): @unknown") if @unknown;
  my %s = (%DEFAULTS, %$given);
  for my $k (sort keys %RANGE) {
    my ($min, $max) = @{$RANGE{$k}};
    Carp::croak("new_session: $k must be an integer from $min to $max")
      unless defined $s{$k} && $s{$k} =~ /\A[0-9]+\z/ && $s{$k} >= $min && $s{$k} <= $max;
  }
  my $rst = $s{rst_rate_limit};
  Carp::croak('new_session: rst_rate_limit must be [burst, rate], two whole numbers')
    unless ref $rst eq 'ARRAY' && @$rst == 2 && !grep { !defined || !/\A[0-9]+\z/ || $_ >= 2**63 } @$rst;
  $s{$_} = $s{$_} ? 1 : 0 for qw(enable_connect_protocol enable_push upgrade_head);
  return \%s;
}

# Whether $bytes start with the client connection preface (h2c with prior knowledge):
# 1 yes, 0 no, undef when they are a proper prefix of it (read more)
sub is_preface {
  my ($bytes) = @_;
  my $n = length($bytes // '');
  $n = 24 if $n > 24;
  return 0 if substr($bytes // '', 0, $n) ne substr(PREFACE, 0, $n);
  return $n == 24 ? 1 : undef;
}

# The HTTP status of a refused request's kind (the h2req rows of errors.tsv)
sub error_status { ($PAGI::Server::Protocol::Errors::H2REQ{$_[0]} // [400])->[0] }

# The RFC 9113 error code of a connection or stream error's kind (the h2 rows)
sub error_code { ($PAGI::Server::Protocol::Errors::H2{$_[0]} // [2])->[0] }

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2 - the HTTP/2 codec facade (pure Perl or Rust over nghttp2)

=head1 SYNOPSIS

  use PAGI::Server::Protocol::HTTP2;
  my ($s, $error) = PAGI::Server::Protocol::HTTP2::new_session({max_concurrent_streams => 100});
  my $preface = $s->output(65536);                 # the server's SETTINGS
  my ($events, $conn_error) = $s->feed($bytes);    # what the client sent
  for my $ev (@$events) { ... }                    # ['request', $id, $req, $end_stream], ...
  $s->respond($id, 200, [['content-type', 'text/plain']], 0);
  $s->send_data($id, 'hello', 1);
  print $sock $s->output(65536) while $s->want_write;

=head1 DESCRIPTION

The HTTP/2 protocol core below the connection: a sans-IO server session that takes
bytes and gives events and bytes, with the same contract in both backends
(F<doc/codec.md>, "The codec interface (HTTP/2)"): L<PAGI::Server::Protocol::HTTP2::XS>
drives nghttp2 from Rust, L<PAGI::Server::Protocol::HTTP2::PP> uses Protocol::HTTP2's
frame codec and HPACK under a session of its own. The backend is the one
L<PAGI::Server::Protocol::Backend> chose for every codec (C<$IMPLEMENTATION>).

=head1 FUNCTIONS

=head2 new_session

  my ($session, $error) = new_session(\%settings);

A session (an object of C<$SESSION_CLASS>) whose output starts with the server's
SETTINGS. Settings, with their defaults in C<%DEFAULTS>: C<max_concurrent_streams>,
C<initial_window_size>, C<max_frame_size>, C<max_header_list_size>,
C<enable_connect_protocol>, C<enable_push>, C<rst_rate_limit> (C<[burst, rate]>),
C<max_headers>, C<upgrade> (the HTTP2-Settings value of an C<Upgrade: h2c> request) and
C<upgrade_head>. An unknown setting or a value out of range croaks; an invalid
HTTP2-Settings value (peer input) gives C<(undef, {error => 'bad_upgrade_settings', ...})>.

=head2 is_preface

  my $yes = is_preface($bytes);   # 1, 0, or undef: read more

=head2 session_settings, error_status, error_code

The completed settings (what both backends' C<new_session> use); the HTTP status of a
refused request's kind; the RFC 9113 code of an error kind.

=head1 CONSTANTS

C<H2_NO_ERROR> ... C<H2_HTTP_1_1_REQUIRED> (RFC 9113 error codes), C<PREFACE>.

=head1 SEE ALSO

F<doc/codec.md>, L<PAGI::Server::Protocol::HTTP1>.

=cut
