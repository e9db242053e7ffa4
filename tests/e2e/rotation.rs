//! Certificates rotate without a restart, as cert-manager rotates them: the
//! files are replaced, new connections get the new certificate, open streams
//! carry on, and files that fail a check leave the certificate in force.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orex_cli::bundle::Connection;
use orex_e2e::{Stack, content, publish, within};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::SubscribeReportsRequest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The certificate a new connection to `addr` is served, as a member sees it.
async fn served_certificate(stack: &Stack, addr: SocketAddr) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(stack.layout.ca_cert()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let (cert, key) = stack.bundle_identity("us-alice");
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("gateway").unwrap(), tcp)
        .await
        .expect("handshake with the gateway");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The count of `orex_tls_reloads_total{outcome=…}` in this process.
fn reloads(outcome: &str) -> u64 {
    let text = orex_kit::metrics::global().render();
    let prefix = format!("orex_tls_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_connections_and_open_streams_carry_on() {
    let stack = Stack::spawn().await;
    let mut watcher = stack.client("jp-kenji").await;
    let mut events = watcher
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let (cert_path, key_path) = stack.layout.workload("gateway");
    let before = served_certificate(&stack, stack.gateway_addr).await;
    assert_eq!(
        before,
        der_of(&std::fs::read_to_string(&cert_path).unwrap())
    );

    // cert-manager writes a new key and certificate.
    let renewed = stack.layout.ca().unwrap().workload("gateway").unwrap();
    std::fs::write(&key_path, &renewed.key_pem).unwrap();
    std::fs::write(&cert_path, &renewed.cert_pem).unwrap();
    let new = der_of(&renewed.cert_pem);
    within(30, async {
        while served_certificate(&stack, stack.gateway_addr).await != new {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // The stream opened before the rotation still delivers, and calls on new
    // connections go through.
    let mut us = Connection::open(&stack.bundle("us-alice"))
        .await
        .unwrap()
        .sharing();
    let report = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let event = within(10, events.next()).await.unwrap().unwrap();
    assert_eq!(event.report.unwrap().id, report.id);

    // A corrupt certificate file is refused: the renewed certificate stays
    // in force for new connections.
    let refused = reloads("refused");
    std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    within(30, async {
        while reloads("refused") == refused {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(served_certificate(&stack, stack.gateway_addr).await, new);
    let mut again = Connection::open(&stack.bundle("us-alice"))
        .await
        .unwrap()
        .sharing();
    publish(&mut again, content(Marking::Green, &[], &[])).await;
    let event = within(10, events.next()).await.unwrap().unwrap();
    assert!(event.report.is_some());
    stack.stop().await;
}

/// Accepts one mutual-TLS connection on `listener` and returns the client
/// certificate it presented.
async fn client_certificate_of_next_connection(
    listener: &tokio::net::TcpListener,
    server: Arc<rustls::ServerConfig>,
) -> Vec<u8> {
    let (tcp, _) = listener.accept().await.unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server)
        .accept(tcp)
        .await
        .expect("handshake with the dialler");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_dialled_connection_presents_the_renewed_client_certificate() {
    orex_kit::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = orex_cli::devpki::DevCa::generate("rotation test CA").unwrap();
    let write = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    // The server: a workload certificate, and client certificates required.
    let issued = ca.workload("sharing").unwrap();
    let server_files = orex_kit::tls::TlsFiles {
        ca: write("ca.pem", &ca.cert_pem),
        cert: write("server.pem", &issued.cert_pem),
        key: write("server-key.pem", &issued.key_pem),
    };
    let server = server_files.load().unwrap().server_config();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());

    // The dialler: the gateway's certificate, which cert-manager renews.
    let first = ca.workload("gateway").unwrap();
    let client = orex_kit::tls::TlsFiles {
        ca: dir.path().join("ca.pem"),
        cert: write("client.pem", &first.cert_pem),
        key: write("client-key.pem", &first.key_pem),
    }
    .load()
    .unwrap();
    let dialer = orex_kit::transport::Dialer::new(&address, "sharing", &client).unwrap();
    // The server speaks no HTTP/2: the connection fails after the handshake,
    // which is all this test looks at.
    let attempt = tokio::spawn({
        let dialer = dialer.clone();
        async move { dialer.connect().await }
    });
    let presented = within(
        10,
        client_certificate_of_next_connection(&listener, server.clone()),
    )
    .await;
    assert_eq!(presented, der_of(&first.cert_pem));
    let _ = attempt.await;

    let renewed = ca.workload("gateway").unwrap();
    write("client-key.pem", &renewed.key_pem);
    write("client.pem", &renewed.cert_pem);
    assert!(
        client.reload().unwrap(),
        "the renewed files are put in force"
    );
    let attempt = tokio::spawn(async move { dialer.connect().await });
    let presented = within(10, client_certificate_of_next_connection(&listener, server)).await;
    assert_eq!(presented, der_of(&renewed.cert_pem));
    let _ = attempt.await;
}
