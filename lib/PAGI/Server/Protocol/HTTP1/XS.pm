package PAGI::Server::Protocol::HTTP1::XS;
use v5.32;
use warnings;

our $VERSION = '0.001';

# The Rust HTTP/1.1 codec, through XS. Same functions, same results as ::PP.
our @FUNCTIONS = qw(parse_request decode_chunked serialize_response check_headers serialize_chunk
  serialize_trailers connection_info accept_socket set_server_header);

# Loaded at require time, after $VERSION is set (the XS bootcheck compares it)
_load();

sub _load {
  require XSLoader;
  require Config;
  require File::Spec;
  my ($vol, $dir) = File::Spec->splitpath(File::Spec->rel2abs(__FILE__));
  # lib/PAGI/Server/Protocol/HTTP1/XS.pm -> the directory above lib/ (or blib/lib/)
  my @dirs = grep { length } File::Spec->splitdir($dir);
  my $top = File::Spec->catpath($vol, File::Spec->catdir('', @dirs[0 .. $#dirs - 5]), '');
  my $arch = File::Spec->catdir($top, 'blib', 'arch');
  my $object = File::Spec->catfile($arch, qw(auto PAGI Server Protocol HTTP1 XS),
    "XS.$Config::Config{dlext}");

  # In a source tree (a checkout or an unpacked release: its Makefile.PL is there) only
  # the object that tree's `make` built will do, so that `prove -l t/` tests it and never
  # an installed one. An installed copy loads the object installed with it (XSLoader
  # looks beside this file first, then @INC).
  local @INC = @INC;
  my $error;
  if (-e File::Spec->catfile($top, 'Makefile.PL')) {
    unshift @INC, $arch if -e $object;
    $error = "it is not built in the source tree $top (no blib/arch there)\n" unless -e $object;
  }
  return 1 if !$error && eval { XSLoader::load(__PACKAGE__, $VERSION); 1 };
  $error //= $@;
  die "PAGI::Server::Protocol::HTTP1::XS is not built or cannot be loaded:"
    . " build it with 'perl Makefile.PL && make' (or use the pure-Perl backend,"
    . " PAGI_SERVER_BACKEND=pp).\nThe load error was: $error";
}

1;

=head1 NAME

PAGI::Server::Protocol::HTTP1::XS - the HTTP/1.1 codec in Rust, through XS

=head1 SYNOPSIS

  # Normally through the facade, which picks this backend when it is built:
  use PAGI::Server::Protocol::HTTP1;
  print PAGI::Server::Protocol::HTTP1::backend();    # "XS"

  # Directly:
  require PAGI::Server::Protocol::HTTP1::XS;
  my ($req, $consumed) = PAGI::Server::Protocol::HTTP1::XS::parse_request(
    $buf, 16384, 100, 8192);

=head1 DESCRIPTION

The native implementation of the functions described in F<doc/codec.md>:
C<parse_request>, C<decode_chunked>, C<serialize_response>, C<check_headers>,
C<serialize_chunk>, C<serialize_trailers>, C<connection_info> and
C<set_server_header>. Their results are identical to those
of L<PAGI::Server::Protocol::HTTP1::PP> (F<t/30-codec-differential.t> checks it on a
corpus, every split point and a seeded random mutation run); only the speed differs.
Nothing is exported.

The protocol rules live in Rust (F<src/>: pure functions over bytes, no Perl, no IO
but the C<getpeername>/C<getsockname> of C<connection_info>). The XS glue
(F<perl/XS.xs>) only converts values across a flat C ABI (F<perl/pagi_server.h>).
The same object also holds the WebSocket frame codec, in the package
L<PAGI::Server::Protocol::WebSocket::XS>.

=head1 FUNCTIONS

See F<doc/codec.md> for the contract of each. Differences that only concern API
misuse, never peer input:

=over

=item *

a buffer passed to C<parse_request> or C<decode_chunked> must be bytes: a string
with a character above 0xFF croaks (the PP code would treat it as invalid input);

=item *

headers that are not an array reference of array references croak with a message
naming the function (C<serialize_response>, C<check_headers>, C<serialize_trailers>).

=item *

a body (or chunk) with a character above 0xFF croaks in both backends; the messages
differ.

=back

A Rust panic (a bug) never unwinds into Perl or C: it is caught at the boundary and
becomes a croak that names the function.

=head1 BUILDING

  perl Makefile.PL && make

builds the Rust static library with C<cargo build --release --locked> and links it
into F<blib/arch/auto/PAGI/Server/Protocol/HTTP1/XS/XS.so>. In a source checkout this
module loads that object and no other (not built there, it does not load), so
C<prove -l t/> after C<make> tests the XS backend; an installed copy loads the object
installed with it.
C<perl Makefile.PL PUREPERL_ONLY=1> (or a machine without cargo) builds without it.

=head1 DEBUGGING

C<PAGI_SERVER_BACKEND=pp> forces the pure-Perl backend; C<=xs> demands this one and
dies with the load error when it is not built.

=head1 SEE ALSO

L<PAGI::Server::Protocol::HTTP1>, L<PAGI::Server::Protocol::HTTP1::PP>,
F<doc/codec.md>.

=cut
