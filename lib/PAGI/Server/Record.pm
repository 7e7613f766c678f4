package PAGI::Server::Record;
use strict;
use warnings;
use Exporter ();

our $VERSION = '0.001';

# Array records with named fields. In the package that owns a record:
#
#   use PAGI::Server::Record qw(phase rbuf wbuf);
#
# makes the index constants PHASE (0), RBUF (1) and WBUF (2) there, @FIELDS (the
# names in index order, for debugging: map { $FIELDS[$_] => $rec->[$_] } 0..$#FIELDS),
# and lets other packages import the constants by name or
# all of them with the tag ':fields'. An array element costs about half a hash
# lookup, and the hot path touches a few hundred fields per request; a typo in a
# constant is a compile-time error, where a hash key typo is a silent undef.
sub import {
  my ($class, @names) = @_;
  my $pkg = caller;
  my @const = map { uc } @names;
  my %seen;
  $seen{$_}++ and die "PAGI::Server::Record: field '$_' declared twice in $pkg\n" for @const;
  # Subs with an empty prototype returning a literal: inlined wherever they are used
  my $code = join "\n", "package $pkg;", (map { "sub $const[$_] () { $_ }" } 0 .. $#const), '1;';
  eval $code or die "PAGI::Server::Record: $@";
  no strict 'refs';
  # (assigned as globs: a name used only here would be warned about as a typo)
  *{"${pkg}::FIELDS"} = [@names];
  *{"${pkg}::EXPORT_OK"} = [] unless @{"${pkg}::EXPORT_OK"};
  *{"${pkg}::EXPORT_TAGS"} = {} unless %{"${pkg}::EXPORT_TAGS"};
  push @{"${pkg}::EXPORT_OK"}, @const;
  push @{${"${pkg}::EXPORT_TAGS"}{fields}}, @const;
  *{"${pkg}::import"} = \&Exporter::import unless defined &{"${pkg}::import"};
  return;
}

1;

=head1 NAME

PAGI::Server::Record - named fields for array-based records

=head1 SYNOPSIS

  package My::Record;
  use PAGI::Server::Record qw(name size);   # NAME => 0, SIZE => 1

  package main;
  use My::Record qw(:fields);
  my $r = bless ['a', 1], 'My::Record';
  print $r->[SIZE];

=head1 DESCRIPTION

Internal. Each record of the server (a connection, a request, a WebSocket session,
an SSE stream, a TLS session) is an array whose fields have upper-case index
constants, declared once in the package that owns the record.

=cut
