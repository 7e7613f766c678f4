package PAGI::Server::Future;
use strict;
use warnings;
use Future;
use Scalar::Util ();

our $VERSION = '0.001';

# The already-done Futures the server hands to applications on every request: what
# a send that needs no waiting returns ($DONE, one shared instance) and what a
# receive whose event is already there returns (ready($event)). Both are real Futures
# (every method of Future works on them, and they can join Future->needs_all and
# the like), of subclasses that answer the two questions `await` asks at once,
# instead of through Future's generic AWAIT_* wrappers (which cost two method calls
# each). Built with Future->done, a done Future with a value costs about 9,500
# instructions (made and freed); ready() builds the same object directly (about 4,100)
# when Future is the pure-Perl implementation whose layout it knows (checked at load),
# and uses Future->done otherwise.

# What a send returns: one shared, already-done Future (a done Future is immutable to
# its users; this saves two allocations per send). Its class has that one instance;
# what Future's methods build from it (->then, ...) is a plain Future.
our $DONE = bless Future->done, 'PAGI::Server::Future::Done';
{
  package PAGI::Server::Future::Done;
  our @ISA = ('Future');
  sub new { shift; Future->new(@_) }
  sub AWAIT_IS_READY { 1 }
  sub AWAIT_GET { return }
  { no warnings 'once'; *AWAIT_RESULT = \&AWAIT_GET; }
}

# Does a done Future look as ready() builds it: a hash of ready, callbacks, result?
# (Future::PP, the implementation Debian has; Future::XS objects are not hashes)
use constant DIRECT => do {
  my $f = Future->done(42);
  ref $f eq 'Future' && Scalar::Util::reftype($f) eq 'HASH' && $f->{ready}
    && ref $f->{callbacks} eq 'ARRAY' && ref $f->{result} eq 'ARRAY' && $f->{result}[0] == 42
    && !grep { !/\A(?:ready|callbacks|result)\z/ } keys %$f;
};

# A done Future of @values (usually one event)
sub ready {
  return bless {ready => 1, callbacks => [], result => [@_]}, 'PAGI::Server::Future::Ready' if DIRECT;
  return bless Future->done(@_), 'PAGI::Server::Future::Ready';
}
{
  package PAGI::Server::Future::Ready;
  our @ISA = ('Future');
  sub new { shift; Future->new(@_) }
  sub AWAIT_IS_READY { 1 }
  # (only for DIRECT objects: otherwise Future's own, below)
  sub AWAIT_GET { wantarray ? @{$_[0]{result}} : $_[0]{result}[0] }
  { no warnings 'once'; *AWAIT_RESULT = \&AWAIT_GET; }
  if (!PAGI::Server::Future::DIRECT) {
    no warnings 'redefine';
    *AWAIT_GET = *AWAIT_RESULT = sub { shift->result };
  }
}

1;

=head1 NAME

PAGI::Server::Future - the server's cheap already-done Futures

=head1 DESCRIPTION

Internal. C<$PAGI::Server::Future::DONE> is what a send that needs no waiting
returns; C<PAGI::Server::Future::ready(@values)> is a done Future of C<@values>, what
a receive returns when its event is already there. Both are Futures in every
respect; C<await> on them costs less than on a Future made by C<< Future->done >>.

=cut
