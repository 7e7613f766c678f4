# echo-post: reads the whole request body and answers its length ("4096\n"), as
# raw_http.pl --echo does
use strict;
use warnings;
use Future::AsyncAwait;

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  my $len = 0;
  while (1) {
    my $ev = await $receive->();
    last if $ev->{type} ne 'http.request';    # http.disconnect
    $len += length($ev->{body} // '');
    last unless $ev->{more};
  }
  await $send->({type => 'http.response.start', status => 200,
    headers => [['content-type', 'text/plain']]});
  await $send->({type => 'http.response.body', body => "$len\n"});
};
