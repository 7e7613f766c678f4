package PAGI::Server::Protocol::HTTP1;
use strict;
use warnings;
use Carp ();

our $VERSION = '0.001';

# The HTTP/1.1 codec seam: the same few functions from ::PP (Perl) or ::XS (Rust).
# PAGI_SERVER_BACKEND=pp|xs forces one; unset means XS when it is built, else PP.
our @FUNCTIONS = qw(parse_request decode_chunked serialize_response check_headers serialize_chunk
  serialize_trailers connection_info);

our $IMPLEMENTATION;
our $LOAD_ERROR;

sub _select {
  my $want = $ENV{PAGI_SERVER_BACKEND};
  $want = $PAGI::Server::BACKEND if !defined $want || $want eq '' || $want eq 'auto';
  $want = 'auto' if !defined $want || $want eq '';
  $want = lc $want;
  Carp::croak("PAGI_SERVER_BACKEND must be 'xs', 'pp' or 'auto', not '$want'")
    unless $want =~ /\A(?:xs|pp|auto)\z/;
  if ($want ne 'pp') {
    if (eval { require PAGI::Server::Protocol::HTTP1::XS; 1 }) { return 'XS' }
    $LOAD_ERROR = $@;
    die "PAGI::Server: the XS backend was requested (PAGI_SERVER_BACKEND=xs) but cannot be"
      . " loaded; build it with 'perl Makefile.PL && make' or use PAGI_SERVER_BACKEND=pp.\n"
      . "The load error was: $LOAD_ERROR"
      if $want eq 'xs';
  }
  require PAGI::Server::Protocol::HTTP1::PP;
  return 'PP';
}

$IMPLEMENTATION = _select();

# Alias the chosen implementation's functions into this package: no wrapper per call
{
  my $impl = "PAGI::Server::Protocol::HTTP1::$IMPLEMENTATION";
  no strict 'refs';
  for my $f (@FUNCTIONS) {
    my $code = $impl->can($f) or die "$impl does not implement $f\n";
    *{$f} = $code;
  }
}

sub backend { $IMPLEMENTATION }

# The one table from error kinds to responses; both backends share it
our %ERROR_STATUS = (
  bad_request_line              => 400,
  bad_header                    => 400,
  bad_host                      => 400,
  bad_content_length            => 400,
  conflicting_length            => 400,
  bad_transfer_encoding         => 400,
  bad_chunk                     => 400,
  body_too_large                => 413,
  uri_too_long                  => 414,
  headers_too_large             => 431,
  unsupported_transfer_encoding => 501,
  unsupported_version           => 505,
);

sub error_status { $ERROR_STATUS{$_[0]} // 400 }

# Reason phrases of the responses the server writes itself (the body of its error
# responses), kept here so that they do not depend on which backend is loaded
our %ERROR_REASON = (
  400 => 'Bad Request',
  403 => 'Forbidden',
  408 => 'Request Timeout',
  413 => 'Content Too Large',
  414 => 'URI Too Long',
  426 => 'Upgrade Required',
  431 => 'Request Header Fields Too Large',
  500 => 'Internal Server Error',
  501 => 'Not Implemented',
  503 => 'Service Unavailable',
  505 => 'HTTP Version Not Supported',
);

sub error_reason { $ERROR_REASON{$_[0]} // 'Error' }

# Flags for serialize_response
use constant { F_HEAD => 1, F_CLOSE => 2, F_HTTP10 => 4 };
# Body framing modes returned by serialize_response
use constant { M_NONE => 0, M_LENGTH => 1, M_CHUNKED => 2, M_CLOSE => 3 };

1;

=head1 NAME

PAGI::Server::Protocol::HTTP1 - the HTTP/1.1 codec facade (pure Perl or Rust)

=head1 SYNOPSIS

  use PAGI::Server::Protocol::HTTP1;
  my ($req, $consumed) = PAGI::Server::Protocol::HTTP1::parse_request(
    $buf, $max_header_size, $max_headers, $max_line);
  print PAGI::Server::Protocol::HTTP1::backend();   # "XS" or "PP"

=head1 DESCRIPTION

Every byte of HTTP/1.1 that PAGI::Server reads or writes goes through the functions
of this module: C<parse_request>, C<decode_chunked>, C<serialize_response>,
C<serialize_chunk>, C<serialize_trailers> and C<connection_info>. They are pure
functions (no state but the cached Date line) with one contract, written down in
F<doc/codec.md>, and two implementations:
L<PAGI::Server::Protocol::HTTP1::XS> (Rust, through XS) and
L<PAGI::Server::Protocol::HTTP1::PP> (pure Perl).

=head1 ENVIRONMENT

=over

=item PAGI_SERVER_BACKEND

C<xs> demands the Rust backend (and dies, saying how to build it, when it is not
built); C<pp> forces pure Perl; unset or C<auto> picks XS when it loads, else PP.
The choice is made once, when this module is loaded, and kept in
C<$PAGI::Server::Protocol::HTTP1::IMPLEMENTATION>.

=back

=head1 FUNCTIONS

=head2 error_status

  my $status = error_status($kind);

The HTTP status for one of the codec's error kinds.

=head2 error_reason

  my $text = error_reason($status);

The reason phrase for a status the server answers by itself (400, 403, 408, 413,
414, 426, 431, 500, 501, 503, 505), the same whichever backend is active; C<Error> for
others.

=head1 SEE ALSO

L<PAGI::Server>, F<doc/codec.md>.

=cut
