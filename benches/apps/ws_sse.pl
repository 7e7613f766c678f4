# The app for benches/ws_sse.pl: a WebSocket echo at /ws and an SSE stream at
# /events?n=N&size=S (N events of S bytes of data each, as fast as the socket takes
# them, then the stream ends).
use strict;
use warnings;
use Future::AsyncAwait;

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  if ($scope->{type} eq 'websocket') {
    await $receive->();
    await $send->({type => 'websocket.accept'});
    while (1) {
      my $ev = await $receive->();
      return if $ev->{type} eq 'websocket.disconnect';
      await $send->({type => 'websocket.send',
        defined $ev->{text} ? (text => $ev->{text}) : (bytes => $ev->{bytes})});
    }
  }
  if ($scope->{type} eq 'sse') {
    await $receive->();
    my %q = map { split /=/, $_, 2 } split /&/, $scope->{query_string};
    my $data = 'x' x ($q{size} // 64);
    await $send->({type => 'sse.start'});
    for my $i (1 .. $q{n} // 1000) {
      await $send->({type => 'sse.send', event => 'tick', id => $i, data => $data});
    }
    return;
  }
  await $receive->();
  await $send->({type => 'http.response.start', status => 404, headers => []});
  await $send->({type => 'http.response.body', body => ''});
};
