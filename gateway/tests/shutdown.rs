//! A graceful shutdown, as the binary runs it: every open WebSocket gets a
//! close frame with 1001 (going away), and then the server stops. As in
//! requests.rs, the Kubernetes client points at a closed port.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sandrun_gateway::startup::serve;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Error, Message};

mod common;

const TOKEN: &str = "shutdown-token-0123456789";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr) -> Socket {
    let request = ClientRequestBuilder::new(format!("ws://{addr}/v1/ws").parse().unwrap())
        .with_header("Authorization", format!("Bearer {TOKEN}"));
    tokio_tungstenite::connect_async(request).await.expect("connect").0
}

/// The next frame that is not a ping or pong: `text`, `close CODE`, or
/// `end` once the connection is over.
async fn next(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame in time");
        return match frame {
            Some(Ok(Message::Text(_))) => "text".to_owned(),
            Some(Ok(Message::Close(frame))) => format!("close {}", frame.map(|f| u16::from(f.code)).unwrap_or(0)),
            Some(Ok(_)) => continue,
            None | Some(Err(Error::ConnectionClosed)) => "end".to_owned(),
            Some(Err(e)) => format!("failed: {e}"),
        };
    }
}

#[tokio::test]
async fn a_shutdown_closes_every_socket_with_going_away_and_then_stops() {
    let keys = format!("keys:\n  - {{name: t, token: {TOKEN}, namespace: team-t}}\n");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.await;
        };
        serve(listener, common::state(&keys), &common::limits(vec![]), stop).await
    });

    let mut sockets = vec![connect(addr).await, connect(addr).await];
    for socket in &mut sockets {
        // An answer proves the session is running, not just upgraded.
        socket.send(Message::Text("garbage".into())).await.unwrap();
        assert_eq!(next(socket).await, "text");
    }
    stop.send(()).unwrap();
    for (i, socket) in sockets.iter_mut().enumerate() {
        assert_eq!(next(socket).await, "close 1001", "socket {i}");
        // Reading on sends the client's close frame back: the handshake ends.
        assert_eq!(next(socket).await, "end", "socket {i}");
    }
    let served = tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server stops");
    served.unwrap().expect("served without an error");
}
