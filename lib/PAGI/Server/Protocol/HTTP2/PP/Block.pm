package PAGI::Server::Protocol::HTTP2::PP::Block;
use strict;
use warnings;
use PAGI::Server::Protocol::Errors;
use PAGI::Server::Protocol::HTTP1::PP ();

our $VERSION = '0.001';

# A header block's fields as they are decoded (src/h2.rs Block, with nghttp2's HTTP
# messaging checks in front of it): each judged by nghttp2's rules, kept within the
# limits, then the block judged as a whole and made a request (or trailers). One
# object per block; the session makes it and reads the result.
#
#   my $b = PAGI::Server::Protocol::HTTP2::PP::Block->new($settings, $trailer, $content_length);
#   $b->add($name, $value) or ...;          # false: malformed (a connection error)
#   $b->complete($end_stream) or ...;       # the same, for the whole block
#   $b->content_length;                     # -1 without one
#   $b->over ? ... : $b->fields;            # trailers
#   $b->request;                            # the request hash, or its refusal

# Byte classes of nghttp2's checks (nghttp2_helper.c, nghttp2_http.c)
my $NAME_OK      = qr/\A:?[!#\$%&'*+\-.^_`|~0-9a-z]+\z/;
my $VALUE_OK     = qr/\A[\t\x20-\x7e\x80-\xff]*\z/;
my $METHOD_OK    = qr/\A[!#\$%&'*+\-.^_`|~0-9A-Za-z]+\z/;
my $PATH_OK      = qr/\A[\x21-\x7e\x80-\xff]*\z/;
my $AUTHORITY_OK = qr/\A[!\$%&'()*+,\-.0-9:;=A-Z\[\]_a-z~]*\z/;
my $SCHEME_OK    = qr/\A[A-Za-z][A-Za-z0-9+\-.]*\z/;

# The connection-specific fields (RFC 9113 8.2.2): malformed in a request, dropped
# from a response (PP::Output)
our %CONNECTION_SPECIFIC = map { $_ => 1 } qw(connection keep-alive proxy-connection transfer-encoding upgrade);

# $s: the session's settings (max_header_list_size, max_headers,
# enable_connect_protocol); $trailer: the block ends a request body; $cl: the
# stream's content-length so far (-1: none)
sub new {
  my ($class, $s, $trailer, $cl) = @_;
  return bless {
    s => $s, trailer => $trailer, cl => $cl,
    seen => {},         # what was seen (nghttp2's http_flags)
    fields => [], pseudo => {}, count => 0, size => 0, over => 0, cookie_at => undef, host_at => undef,
  }, $class;
}

# One field: false when it makes the block malformed; an invalid regular field is
# dropped
sub add {
  my ($self, $name, $value) = @_;
  my $r = $self->_check($name, $value);
  return 0 if $r eq 'error';
  $self->_store($name, $value) if $r eq 'ok';
  return 1;
}

# The whole block (nghttp2's checks once it ended): false when malformed
sub complete {
  my ($self, $end) = @_;
  return $end ? 1 : 0 if $self->{trailer};
  my $f = $self->{seen};
  if (!$f->{':protocol'} && $f->{connect}) {
    $self->{cl} = -1;
    return !$f->{':scheme'} && !$f->{':path'} && $f->{':authority'} ? 1 : 0;
  }
  return $f->{':method'} && $f->{':scheme'} && $f->{':path'} && ($f->{':authority'} || $f->{host})
    && (!$f->{':protocol'} || ($f->{connect} && $f->{':authority'}))
    && (!$f->{scheme_http} || $f->{path_regular} || ($f->{options} && $f->{path_asterisk})) ? 1 : 0;
}

sub content_length { return $_[0]{cl} }

# Past max_header_list_size or max_headers (then fields is empty)
sub over { return $_[0]{over} }

sub fields { return $_[0]{fields} }

# One field against nghttp2's rules (nghttp2_http_on_header): 'ok', 'ignore' (an invalid
# regular field: dropped) or 'error' (malformed: a connection error)
sub _check {
  my ($self, $name, $value) = @_;
  my $f = $self->{seen};
  my $pseudo = substr($name, 0, 1) eq ':';
  if ($name !~ $NAME_OK || $name eq ':') {
    return 'error' if $pseudo || $name =~ /[A-Z]/;
    $f->{regular} = 1;
    return 'ignore';
  }
  my $ok = $name eq ':method' ? $value =~ $METHOD_OK
    : $name eq ':path' ? $value =~ $PATH_OK
    : $name eq ':authority' || $name eq 'host' ? $value =~ $AUTHORITY_OK
    : $name eq ':scheme' ? $value =~ $SCHEME_OK
    : $value =~ $VALUE_OK && $value !~ /\A[ \t]|[ \t]\z/;
  if (!$ok) {
    return 'error' if $pseudo;
    $f->{regular} = 1;
    return 'ignore';
  }
  return 'error' if $pseudo && ($self->{trailer} || $f->{regular});
  my $once = sub { return 0 if $f->{$name} || $value eq ''; $f->{$name} = 1; 1 };
  if ($name eq ':authority' || $name eq ':path' || $name eq ':scheme' || $name eq ':method') {
    return 'error' unless $once->();
    if ($name eq ':method') {
      $f->{connect} = 1 if $value eq 'CONNECT';
      $f->{options} = 1 if $value eq 'OPTIONS';
    }
    elsif ($name eq ':path') {
      if (substr($value, 0, 1) eq '/') { $f->{path_regular} = 1 }
      elsif ($value eq '*') { $f->{path_asterisk} = 1 }
    }
    elsif ($name eq ':scheme') { $f->{scheme_http} = 1 if lc($value) eq 'http' || lc($value) eq 'https' }
  }
  elsif ($name eq ':protocol') {
    return 'error' unless $self->{s}{enable_connect_protocol} && $once->();
  }
  elsif ($name eq 'host') {
    return 'error' if $f->{host} || $value eq '';
    $f->{host} = 1;
  }
  elsif ($name eq 'content-length') {
    return 'error' if $self->{cl} != -1 || $value !~ /\A[0-9]+\z/ || length($value) > 19
      || (length($value) == 19 && $value gt '9223372036854775807');
    $self->{cl} = 0 + $value;
  }
  elsif ($CONNECTION_SPECIFIC{$name}) { return 'error' }
  elsif ($name eq 'te') { return 'error' if lc($value) ne 'trailers' }
  elsif ($pseudo) { return 'error' }
  $f->{regular} = 1 unless $pseudo;
  return 'ok';
}

# Keeps a field within the limits (as src/h2.rs Block::add)
sub _store {
  my ($self, $name, $value) = @_;
  return if $self->{over};
  my $s = $self->{s};
  $self->{size} += length($name) + length($value) + 32;
  my $pseudo = substr($name, 0, 1) eq ':';
  $self->{count}++ if !$pseudo && ($name ne 'cookie' || !defined $self->{cookie_at});
  if ($self->{size} > $s->{max_header_list_size} || $self->{count} > $s->{max_headers}) {
    $self->{over} = 1;
    $self->{fields} = [];
    return;
  }
  if ($pseudo) { $self->{pseudo}{$name} = $value if $name =~ /\A:(?:method|path|scheme|authority|protocol)\z/; return }
  if ($name eq 'cookie') {
    if (defined $self->{cookie_at}) { $self->{fields}[$self->{cookie_at}][1] .= "; $value"; return }
    $self->{cookie_at} = @{$self->{fields}};
  }
  $self->{host_at} = @{$self->{fields}} if $name eq 'host';
  push @{$self->{fields}}, [$name, $value];
  return;
}

# The request hash, or its refusal (src/h2.rs Block::request, the same order)
sub request {
  my ($self) = @_;
  my $p = $self->{pseudo};
  return _refusal('headers_too_large') if $self->{over};
  return _refusal('connect_unsupported') if !defined $p->{':protocol'} && ($p->{':method'} // '') eq 'CONNECT';
  my $target = $p->{':path'} // '';
  my ($raw_path, $query) = ($target, '');
  my $q = index($target, '?');
  ($raw_path, $query) = (substr($target, 0, $q), substr($target, $q + 1)) if $q >= 0;
  return _refusal('bad_path')
    unless (substr($raw_path, 0, 1) eq '/' || $target eq '*') && ($target !~ /[\x80-\xff]/ || _utf8($target));
  my $headers = $self->{fields};
  if (defined(my $authority = $p->{':authority'})) {
    if (defined $self->{host_at}) {
      return _refusal('bad_host') if lc $headers->[$self->{host_at}][1] ne lc $authority;
      $headers->[$self->{host_at}][1] = $authority;
    }
    else { unshift @$headers, ['host', $authority] }
  }
  my $path = $raw_path;
  $path =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge if index($path, '%') >= 0;
  if ($path =~ /[\x80-\xff]/) {
    my $chars = _utf8($path);
    $path = $$chars if $chars;
  }
  my %req = (method => $p->{':method'}, path => $path, raw_path => $raw_path, query_string => $query,
    http_version => '2', headers => $headers, scheme => $p->{':scheme'} // '');
  for my $h (@$headers) {
    my ($n, $v) = @$h;
    if    ($n eq 'content-length') { $req{content_length} = 0 + $v }
    elsif ($n eq 'accept')         { $req{sse} = 1 if $v =~ m{text/event-stream}i }
    elsif ($n eq 'expect')         { $req{expect_continue} = 1 if lc($v =~ s/\A[ \t]+|[ \t]+\z//gr) eq '100-continue' }
  }
  $req{protocol} = $p->{':protocol'} if defined $p->{':protocol'};
  return \%req;
}

# {error => KIND, message => TEXT} of the h2req table
sub _refusal { return {error => $_[0], message => $PAGI::Server::Protocol::Errors::H2REQ{$_[0]}[1]} }

# Well-formed UTF-8 (RFC 3629): the HTTP/1.1 codec's judgement
BEGIN { *_utf8 = \&PAGI::Server::Protocol::HTTP1::PP::_utf8 }

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2::PP::Block - a header block of the pure-Perl HTTP/2 session

=head1 DESCRIPTION

Internal to L<PAGI::Server::Protocol::HTTP2::PP>. One object per decoded header
block: C<add> judges each field by nghttp2's HTTP messaging rules (names, values,
pseudo-header fields once and first, C<content-length>, no connection-specific
fields) and keeps it within C<max_header_list_size> and C<max_headers>; C<complete>
judges the block as a whole (the pseudo-header fields a request needs, trailers end
the stream); C<request> makes the request hash C<feed>'s C<request> event carries, or
its refusal, as F<src/h2.rs> C<Block::request> does (F<doc/codec.md>, HTTP/2).

=cut
