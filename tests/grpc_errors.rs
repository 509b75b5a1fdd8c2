//! The gRPC edge's answers to what goes wrong: a passed deadline, overload, bad input, a
//! missing API key; and the operational services (health following readiness, reflection).

mod common;

use std::time::Duration;

use common::grpc::*;
use common::*;
use psr_reward::config::Config;
use psr_reward::server::grpc::pb;
use serde_json::{json, Value};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_deadline_exceeded() {
    let s = TestServer::start_with(slow_embedder(400), Config::default()).await;
    let g = GrpcServer::start(&s.state).await;
    let mut req = tonic::Request::new(pb::EmbedRequest {
        images: vec![images(0).1],
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let status = g.client().embed(req).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_type(&status), "timeout");
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "answered at the deadline, not the batch"
    );
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_resource_exhausted_with_retry_info() {
    let mut config = Config::default();
    config.limits.max_concurrent_requests = 1;
    let s = TestServer::start_with(slow_embedder(600), config).await;
    let g = GrpcServer::start(&s.state).await;
    let mut holder = g.client();
    let red = images(0).1;
    let held = red.clone();
    let first = tokio::spawn(async move {
        holder
            .embed(pb::EmbedRequest {
                images: vec![held],
                ..Default::default()
            })
            .await
    });
    for _ in 0..500 {
        if s.state.admission().requests_in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = g
        .client()
        .embed(pb::EmbedRequest {
            images: vec![red],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_type(&status), "overloaded");
    let retry = status.get_error_details().retry_info().cloned().unwrap();
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    assert!(first.await.unwrap().is_ok(), "the admitted call completes");
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_invalid_argument_with_the_http_error_type() {
    let s = TestServer::start().await;
    let g = GrpcServer::start(&s.state).await;
    let mut client = g.client();
    let (scene, red, _) = images(0);
    let truncated = scene[..scene.len() / 2].to_vec();
    let max = Config::default().limits.max_items_per_request;
    let cases: Vec<(&str, Vec<Vec<u8>>, Value)> = vec![
        ("empty bytes", vec![Vec::new()], json!({"images": [""]})),
        (
            "truncated image",
            vec![truncated.clone()],
            json!({"images": [b64(&truncated)]}),
        ),
        (
            "too many images",
            vec![red.clone(); max + 1],
            json!({"images": vec![b64(&red); max + 1]}),
        ),
        ("no image", Vec::new(), json!({"images": []})),
    ];
    for (what, grpc_images, http_body) in cases {
        let status = client
            .embed(pb::EmbedRequest {
                images: grpc_images,
                ..Default::default()
            })
            .await
            .unwrap_err();
        let (http_status, _, http) = s.post("/v1/embed", &http_body).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!((400..500).contains(&http_status), "{what}: {http}");
        assert_eq!(
            error_type(&status),
            http["error_type"].as_str().unwrap(),
            "{what}"
        );
    }
    // Rewards: too many items, a subject without a reference, a truncated reference.
    let mut no_ref = grpc_item(0);
    no_ref.subjects[0].reference = None;
    let mut bad_ref = grpc_item(0);
    bad_ref.subjects[1].reference = Some(pb::subject::Reference::ReferenceImage(truncated));
    for (what, items, want) in [
        (
            "too many items",
            vec![grpc_item(0); max + 1],
            "invalid_request",
        ),
        ("no reference", vec![no_ref], "invalid_request"),
        ("truncated reference", vec![bad_ref], "invalid_image"),
    ] {
        let status = client
            .reward(pb::RewardRequest {
                items,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(error_type(&status), want, "{what}: {status:?}");
    }
    // A reference hash the cache never saw: NOT_FOUND, as the proto documents.
    let mut unknown = grpc_item(0);
    unknown.subjects[0].reference = Some(pb::subject::Reference::ReferenceHash("0".repeat(32)));
    let status = client
        .reward(pb::RewardRequest {
            items: vec![unknown],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(error_type(&status), "unknown_reference");
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_readiness_and_reflection_lists_the_services() {
    use pb_health::health_check_response::ServingStatus;
    use tonic_health::pb as pb_health;
    use tonic_reflection::pb::v1 as refl;

    let s = TestServer::start().await;
    let g = GrpcServer::start(&s.state).await;
    let mut health = pb_health::health_client::HealthClient::with_origin(g.http2(), g.origin());
    let check = |service: &str| pb_health::HealthCheckRequest {
        service: service.into(),
    };
    let mut serving = None;
    for _ in 0..100 {
        // NOT_FOUND until the follower first reports the service.
        let status = health
            .check(check("psr_reward.v1.RewardService"))
            .await
            .map_or(-1, |r| r.into_inner().status);
        serving = Some(status);
        if status == ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(serving, Some(ServingStatus::Serving as i32));

    let mut reflection =
        refl::server_reflection_client::ServerReflectionClient::with_origin(g.http2(), g.origin());
    let ask = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in ["psr_reward.v1.RewardService", "grpc.health.v1.Health"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }

    // Draining flips health as it flips /ready.
    s.state.start_draining();
    let mut status = 0;
    for _ in 0..100 {
        status = health.check(check("")).await.unwrap().into_inner().status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, ServingStatus::NotServing as i32);
    g.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_travel_as_metadata() {
    const KEY: &str = "grpc-test-key-0123456789";
    // Set before the server reads it; no other test of this binary reads it.
    std::env::set_var("PSR_GRPC_TEST_KEYS", KEY);
    let mut config = Config::default();
    config.auth.keys_env = Some("PSR_GRPC_TEST_KEYS".into());
    let s = TestServer::start_with(default_manifest(), config).await;
    let g = GrpcServer::start(&s.state).await;
    let mut client = g.client();
    let status = client.info(pb::InfoRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(error_type(&status), "unauthorized");
    let mut wrong = tonic::Request::new(pb::InfoRequest {});
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer not-the-key-0123456789".parse().unwrap(),
    );
    assert_eq!(
        client.info(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut right = tonic::Request::new(pb::InfoRequest {});
    right
        .metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    assert!(client.info(right).await.unwrap().into_inner().ready);
    // Health stays open, as /ready does.
    let mut health =
        tonic_health::pb::health_client::HealthClient::with_origin(g.http2(), g.origin());
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    assert!(health.check(check).await.is_ok());
    g.stop().await;
    s.stop().await;
}
