package PAGI::Server::Protocol::Backend;
use strict;
use warnings;
use Carp ();

our $VERSION = '0.001';

# The one place that reads PAGI_SERVER_BACKEND (and $PREFERENCE) and chooses the codec
# backend; both codec facades (HTTP1, WebSocket) install their functions from it, so
# they always agree. The XS object holds both codecs. $PREFERENCE (xs, pp, auto) is
# what PAGI::Server passes down from its $PAGI::Server::BACKEND, set before loading.
our $IMPLEMENTATION;
our $LOAD_ERROR;
our $PREFERENCE;

sub implementation { $IMPLEMENTATION //= _select() }

sub _select {
  my $want = $ENV{PAGI_SERVER_BACKEND};
  $want = $PREFERENCE if !defined $want || $want eq '' || lc $want eq 'auto';
  $want = lc($want // 'auto') || 'auto';
  Carp::croak("PAGI_SERVER_BACKEND must be 'xs', 'pp' or 'auto', not '$want'")
    unless $want =~ /\A(?:xs|pp|auto)\z/;
  return 'PP' if $want eq 'pp';
  # (loading the object checks its version and its C layout against the Rust library)
  return 'XS' if eval { require PAGI::Server::Protocol::HTTP1::XS; 1 };
  $LOAD_ERROR = $@;
  die "PAGI::Server: the XS backend was requested (PAGI_SERVER_BACKEND=xs) but cannot be"
    . " loaded; build it with 'perl Makefile.PL && make' or use PAGI_SERVER_BACKEND=pp.\n"
    . "The load error was: $LOAD_ERROR"
    if $want eq 'xs';
  return 'PP';
}

# Aliases each of the facade's functions to the chosen backend's (no wrapper per call)
# and returns the backend's name
sub install {
  my ($facade, @functions) = @_;
  my $impl   = implementation();
  my $module = "${facade}::$impl";
  (my $file = "$module.pm") =~ s{::}{/}g;
  require $file;
  no strict 'refs';
  # A backend still being compiled (it loaded its facade first, for the facade's
  # constants) gets its functions defined into these aliases when its compilation ends;
  # t/01 checks them
  my $loaded = defined ${"${module}::VERSION"};
  for my $f (@functions) {
    die "$module does not implement $f\n" if $loaded && !defined &{"${module}::$f"};
    *{"${facade}::$f"} = \&{"${module}::$f"};
  }
  return $impl;
}

1;

=head1 NAME

PAGI::Server::Protocol::Backend - chooses the codec backend (XS or PP) once, for both codecs

=head1 DESCRIPTION

L<PAGI::Server::Protocol::HTTP1> and L<PAGI::Server::Protocol::WebSocket> call
C<install> when they load: the first call reads C<PAGI_SERVER_BACKEND> and decides,
and every facade then aliases its functions to that backend's (C<::XS> or C<::PP>).
C<$IMPLEMENTATION> is the choice (C<XS> or C<PP>), C<$LOAD_ERROR> why XS did not load
when C<auto> fell back to PP.

=head1 ENVIRONMENT

=over

=item PAGI_SERVER_BACKEND

C<xs> demands the Rust backend (and dies, saying how to build it, when it is not
built); C<pp> forces pure Perl; unset or C<auto> picks XS when it loads, else PP. When
it is unset or C<auto>, C<$PAGI::Server::Protocol::Backend::PREFERENCE> decides the same
way (PAGI::Server sets it from C<$PAGI::Server::BACKEND>, set before loading it). Any other value croaks.

=back

=head1 SEE ALSO

L<PAGI::Server> (IMPLEMENTATIONS), F<doc/codec.md>.

=cut
