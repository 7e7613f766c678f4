# big: a 64 KiB response body (raw_http.pl --body-size 65536 sends the same)
use strict;
use warnings;
use Future::AsyncAwait;

my $data = 'x' x 65536;

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  await $send->({type => 'http.response.start', status => 200,
    headers => [['content-type', 'text/plain']]});
  await $send->({type => 'http.response.body', body => $data});
};
