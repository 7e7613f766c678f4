package PAGI::Server::AccessLog;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Time::HiRes ();

our $VERSION = '0.001';

# access_log_format: Apache-style format strings and named formats, compiled once
# into a list of pieces (text, or code for a field) that a request's line is joined
# from. The default, 'pagi', is not compiled: request() writes it with
# one sprintf (Common Log Format plus the seconds taken, to the microsecond).

our %NAMED = (
  common   => '%h %l %u %t "%r" %>s %b',
  combined => '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
  clf      => '%h - - [%t] "%m %U%q" %s %ds',    # upstream PAGI::Server's default
  tiny     => '%m %U%q %s %Dms',
);

# What the peer sent is written as Apache writes it (ap_escape_logitem), so that a
# line stays one line of fields whatever a request held: a '"', a '\', a tab and the
# bytes 0x80-0xFF (the only ones outside printable ASCII the parser lets through)
# become \" \\ \t \xhh
my %ESC = ('"' => '\\"', '\\' => '\\\\', "\t" => '\\t', "\n" => '\\n', "\r" => '\\r', "\x0b" => '\\v', "\x08" => '\\b');

sub escape ($s) {
  $s =~ s/([^\x20\x21\x23-\x5b\x5d-\x7e])/$ESC{$1} \/\/ sprintf('\\x%02x', ord $1)/ge;
  return $s;
}

# One field of a line; each gets ($log, $req, $client, $status, $bytes, $took)
my %FIELD = (
  h => sub { $_[2] // '-' },
  l => sub { '-' },
  u => sub { '-' },
  # (Apache's %t: the time in brackets)
  t => sub { '[' . log_time() . ']' },
  r => sub { my $q = $_[1]{query_string};
    escape("$_[1]{method} $_[1]{raw_path}" . (length $q ? "?$q" : '')) . " HTTP/$_[1]{http_version}" },
  m => sub { $_[1]{method} },
  U => sub { escape($_[1]{raw_path}) },
  q => sub { length $_[1]{query_string} ? escape("?$_[1]{query_string}") : '' },
  H => sub { "HTTP/$_[1]{http_version}" },
  s => sub { $_[3] },
  b => sub { $_[4] || '-' },
  B => sub { $_[4] || 0 },
  d => sub { sprintf '%.3f', $_[5] },
  D => sub { int($_[5] * 1_000_000) },
  T => sub { int $_[5] },
);

# A format (or a name from %NAMED) as code returning the line, or undef for 'pagi'.
# Croaks on an unknown field, naming it.
sub compile ($format) {
  Carp::croak('PAGI::Server->new: access_log_format must be a string') if !defined $format || ref $format;
  return undef if $format eq 'pagi';
  $format = $NAMED{$format} if exists $NAMED{$format};
  # [%t] (upstream's spelling of the time in brackets) is Apache's %t
  $format =~ s/\[%t\]/%t/g;
  my @pieces;
  while (length $format) {
    if ($format =~ s/\A([^%]+)//) { push @pieces, $1; next }
    if ($format =~ s/\A%%//) { push @pieces, '%'; next }
    if ($format =~ s/\A%\{([^}]*)\}i//) {
      my $name = lc $1;
      # A request header, '-' when absent (repeated ones joined with ", ")
      push @pieces, sub {
        my @v = map { $_->[1] } grep { $_->[0] eq $name } @{$_[1]{headers}};
        @v ? escape(join(', ', @v)) : '-';
      };
      next;
    }
    # (%>s, %<s: Apache's final and original status, the same here: no internal redirects)
    if ($format =~ s/\A%[<>]?([A-Za-z])//) {
      my $f = $FIELD{$1} or Carp::croak("PAGI::Server->new: access_log_format: unknown field %$1 "
        . '(known: %h %l %u %t %r %m %U %q %H %s %b %B %d %D %T %{Header}i %%)');
      push @pieces, $f;
      next;
    }
    Carp::croak("PAGI::Server->new: access_log_format: cannot read '$format' (a % must start a field)");
  }
  return sub { join('', map { ref $_ ? $_->(@_) : $_ } @pieces) . "\n" };
}

my ($log_time_at, $log_time) = (-1, '');
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

# Common Log Format time (UTC), rebuilt once a second
sub log_time {
  my $now = time;
  return $log_time if $now == $log_time_at;
  my @t = gmtime($log_time_at = $now);
  return $log_time = sprintf '%02d/%s/%04d:%02d:%02d:%02d +0000',
    $t[3], $MON[$t[4]], $t[5] + 1900, @t[2, 1, 0];
}

# ---- a server's access log ---------------------------------------------------------

# The access log of a server: new($target, $format), $target a filehandle or a file
# name (appended to, and opened again by reopen: SIGUSR1 after a log rotation),
# $format a name or a format string (checked by compile). Croaks when the file cannot
# be opened.
sub new ($class, $target, $format) {
  my $self = bless {format => compile($format)}, $class;
  if (ref $target) { $self->{fh} = $target }
  else {
    $self->{path} = $target;
    open($self->{fh}, '>>', $target) or Carp::croak("PAGI::Server->new: cannot open the access log $target: $!");
  }
  return $self;
}

# One request's line: its scope (method, target, version, headers), the client's
# address (or undef), the status, the body bytes sent, when it started (hires)
sub request ($self, $req, $client, $status, $bytes, $started) {
  my $took = $started ? Time::HiRes::time() - $started : 0;
  my $fh = $self->{fh};
  if (my $format = $self->{format}) { return print {$fh} $format->($self, $req, $client // '-', $status, $bytes, $took) }
  my $target = $req->{raw_path} . (length $req->{query_string} ? "?$req->{query_string}" : '');
  # (a quote, a backslash or a byte above 0x7F in it is written as Apache writes it)
  $target = escape($target) if $target =~ tr/"\\\x80-\xff//;
  printf {$fh} qq{%s - - [%s] "%s %s HTTP/%s" %d %s %s\n}, $client // '-', log_time(), $req->{method}, $target,
    $req->{http_version}, $status, $bytes || '-', $started ? sprintf('%.6f', $took) : '-';
}

# Once a second: lines written so far reach the file (a worker's collected lines too)
sub tick ($self) {
  return $self->_write_collected if $self->{collected};
  my $fh = $self->{fh};
  $fh->flush if $fh != \*STDERR && $fh->can('flush');
  return undef;
}

# In a worker: workers share the file, and a buffered handle would flush pieces of
# lines into each other's, so lines are collected and written whole each second
sub collect ($self) {
  return if $self->{collected} || $self->{fh} == \*STDERR;
  $self->{collected} = $self->{fh};
  $self->_collect_anew;
}

sub _collect_anew ($self) {
  my $buf = '';
  open(my $mem, '>', \$buf) or die "in-memory handle: $!";
  @$self{qw(fh buf)} = ($mem, \$buf);
}

# Appends the collected lines to the file in one write; returns an error or undef
sub _write_collected ($self) {
  $self->{fh}->flush;
  my $data = ${$self->{buf}};
  return undef unless length $data;
  $self->_collect_anew;
  my $off = 0;
  while ($off < length $data) {
    my $n = syswrite($self->{collected}, $data, length($data) - $off, $off);
    if (!defined $n) { next if $!{EINTR}; return "access log: $!" }
    $off += $n;
  }
  return undef;
}

# SIGUSR1: the file is opened again by its name, so that after a rotation (logrotate
# moved it away) new lines go to a new file; lines already collected go to the old
# one first. Returns what happened, for the server's log: [level, message], or
# nothing for a log that is not a named file.
sub reopen ($self) {
  my $path = $self->{path} or return;
  open(my $fh, '>>', $path)
    or return [error => "access log: cannot reopen $path: $!; still writing to the old file"];
  if ($self->{collected}) {
    $self->_write_collected;
    $self->{collected} = $fh;
  }
  else {
    $self->{fh}->flush;
    $self->{fh} = $fh;
  }
  return [info => "access log reopened: $path"];
}

1;

=head1 NAME

PAGI::Server::AccessLog - the access log of PAGI::Server, and its formats

=head1 DESCRIPTION

Internal. An object writes a server's access log (C<new($target, $format)>,
C<request>, C<tick> once a second, C<collect> in a worker, C<reopen> on SIGUSR1).
C<access_log_format> is a name or a format string (Apache's fields):

  pagi      (default) Common Log Format plus the seconds taken (6 decimals)
  common    %h %l %u %t "%r" %>s %b
  combined  %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
  clf       %h - - [%t] "%m %U%q" %s %ds   (upstream PAGI::Server's default)
  tiny      %m %U%q %s %Dms

Fields: C<%h> client address, C<%l> and C<%u> always C<->, C<%t> the time as Apache
writes it, C<[02/Dec/2026:20:58:02 +0000]> (UTC; C<[%t]>, upstream's spelling, gives
the same), C<%r> the request line, C<%m> method, C<%U> path as sent, C<%q> C<?query>
or nothing, C<%H> protocol, C<%s> status (C<%E<gt>s> and C<%E<lt>s> too: there are no
internal redirects), C<%b> body bytes (C<-> for none), C<%B> body bytes (C<0> for
none), C<%d> seconds taken (3 decimals), C<%D> microseconds, C<%T> whole seconds,
C<%{Name}i> a request header (C<-> when absent, empty when empty), C<%%> a percent
sign. An unknown field is an error when the server is made.

What the client sent (C<%r>, C<%U>, C<%q>, C<%{Name}i>, and the request line of the
default format) is escaped as Apache's C<ap_escape_logitem> does: C<"> as C<\">,
C<\> as C<\\>, a tab as C<\t>, a byte above 0x7F as C<\xhh>; so a line is one
line of fields whatever the request held. The request line is rebuilt from the
method, target and version (an absolute-form target, C<GET http://host/p>, is
logged as C<GET /p>).

=cut
