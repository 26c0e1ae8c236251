//! The name directory: unique names, lookup, deregistration.

use nix::sys::signal::Signal;
use node::events::Event;
use registry::client::ClientError;
use registry::protocol::{ErrorCode, NativeRequest};
use tests::{Node, Registry};

fn register<'a>(name: &'a str, port: u16) -> NativeRequest<'a> {
    NativeRequest::Register {
        ip: Some("127.0.0.1".parse().unwrap()),
        puerto: port,
        name,
        group: None,
        incarnation: None,
        ticket_key: None,
    }
}

fn refusal(result: Result<impl std::fmt::Debug, ClientError>) -> registry::protocol::ErrorBody {
    match result {
        Err(ClientError::Refused { error, .. }) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_duplicate_name_is_refused_with_its_holder() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let alpha = Node::start(registry.addr, "alpha", &[]).await?;
    alpha.process.wait_for_event(Event::Registered).await?;

    let error = refusal(registry.client().await?.register(&register("alpha", 1)).await);
    assert_eq!(error.code, ErrorCode::NameTaken);
    assert!(error.message.contains(&alpha.addr.to_string()), "{}", error.message);
    assert_eq!(registry.names().await?, ["alpha"]);
    Ok(())
}

#[tokio::test]
async fn a_node_refused_its_name_keeps_trying_until_the_holder_leaves() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut first = Node::start(registry.addr, "alpha", &[]).await?;
    first.process.wait_for_event(Event::Registered).await?;

    let second = Node::start(registry.addr, "alpha", &[]).await?;
    let refused = second.process.wait_for_event(Event::RegistrationRefused).await?;
    assert!(refused["error"].as_str().unwrap().contains("name_taken"), "{refused}");

    first.process.signal(Signal::SIGTERM);
    first.process.wait().await?;
    let registered = second.process.wait_for_event(Event::Registered).await?;
    assert_eq!(registered["addr"], second.addr.to_string());
    let entry = registry.client().await?.lookup("alpha").await?;
    assert_eq!(entry.addr(), second.addr);
    Ok(())
}

#[tokio::test]
async fn lookup_and_deregister() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut client = registry.client().await?;
    let registry::client::Joined::Leased(joined) = client.register(&register("beta", 4242)).await? else {
        panic!("our registry grants leases");
    };
    assert_eq!(client.lookup("beta").await?, joined.entry);

    assert_eq!(client.deregister(&joined.id).await?, joined.entry);
    assert_eq!(refusal(client.lookup("beta").await).code, ErrorCode::NotFound);
    assert_eq!(refusal(client.deregister(&joined.id).await).code, ErrorCode::UnknownId);
    assert!(client.list().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_same_node_registering_again_replaces_its_entry() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut client = registry.client().await?;
    client.register(&register("gamma", 5000)).await?;
    client.register(&register("delta", 5001)).await?;
    let registry::client::Joined::Leased(again) = client.register(&register("gamma", 5000)).await? else {
        panic!("our registry grants leases");
    };
    let names: Vec<_> = again.contactos.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["delta"], "a node is never its own contact");
    assert_eq!(registry.names().await?, ["delta", "gamma"]);
    Ok(())
}
