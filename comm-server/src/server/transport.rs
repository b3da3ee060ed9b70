//! UDP and TCP for SIP: datagrams and stream framing in, bytes out.

use super::*;

pub(super) async fn read_udp(sock: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; message::MAX_MESSAGE_LEN];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let msg = Inbound::Packet {
                    flow: Flow::Udp(from),
                    bytes: buf[..n].to_vec(),
                };
                if inbound.try_send(msg).is_err() {
                    tracing::warn!("inbound queue full; datagram dropped");
                }
            }
            Err(e) => {
                // ICMP port unreachable surfaces here on some platforms; keep serving.
                tracing::debug!(error = %e, "udp receive error");
            }
        }
        if inbound.is_closed() {
            return;
        }
    }
}

pub(super) async fn accept_tcp(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                serve_tcp(stream, peer, inbound.clone());
            }
            Err(e) => tracing::warn!(error = %e, "tcp accept failed"),
        }
    }
}

/// Spawns the reader and writer of one TCP connection; returns the writer's queue.
pub(super) fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
) -> mpsc::Sender<Vec<u8>> {
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let opened = wtx.clone();
    let inbound2 = inbound.clone();
    tokio::spawn(async move {
        let _ = inbound2
            .send(Inbound::TcpOpened {
                peer,
                writer: opened,
            })
            .await;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 8192];
        loop {
            let n = match tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match message::frame_stream(&buf) {
                    Ok(Framing::Complete(len)) => {
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive
                        }
                        if inbound
                            .send(Inbound::Packet {
                                flow: Flow::Tcp(peer),
                                bytes: frame,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Framing::Incomplete) => break,
                    Err(r) => {
                        tracing::debug!(%peer, reason = %r, "closing tcp connection: framing error");
                        let _ = inbound.send(Inbound::TcpClosed { peer }).await;
                        return;
                    }
                }
            }
        }
        let _ = inbound.send(Inbound::TcpClosed { peer }).await;
    });
    wtx
}
