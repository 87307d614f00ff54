//! A home's databases: ownership, aliases and the permission rules.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use atek_db::{
    Access, Adb, AdbError, Caller, DbAdminConfig, DbConfig, MemoryStore, Owner, RecordPath,
};
use serde_json::json;

fn caller(user: &str, service: &str) -> Caller {
    Caller {
        user: user.into(),
        service: service.into(),
        admin: false,
    }
}

async fn home() -> Adb {
    let adb = Adb::open(Arc::new(MemoryStore::default()), None).unwrap();
    adb.init().await.unwrap();
    adb
}

fn p(s: &str) -> RecordPath {
    RecordPath::parse(s).unwrap()
}

#[tokio::test]
async fn public_databases_are_readable_by_all_and_writable_only_by_their_owner() {
    let adb = home().await;
    let ann = caller("ann", "notes-app");
    let ann_other_app = caller("ann", "other-app");
    let bob = caller("bob", "notes-app");
    let info = adb.create(&ann, DbConfig::default()).await.unwrap();
    assert!(info.writable);
    assert_eq!(info.access, Some(Access::Public));
    let id = adb.resolve(&ann, &info.db_id).unwrap();

    adb.for_write(&ann, id)
        .unwrap()
        .put(&p("/notes/1"), json!({"t": 1}))
        .await
        .unwrap();
    // Everyone reads it…
    for reader in [&bob, &ann_other_app] {
        let db = adb.for_read(reader, id).unwrap();
        assert_eq!(
            db.get(&p("/notes/1")).unwrap().unwrap().value,
            json!({"t": 1})
        );
    }
    // …but only the owner (that user through that service) writes it; the original let
    // anyone who knew the id write to a public database.
    assert!(matches!(
        adb.for_write(&bob, id),
        Err(AdbError::NotAuthorized)
    ));
    assert!(matches!(
        adb.for_write(&ann_other_app, id),
        Err(AdbError::NotAuthorized)
    ));
    // Admins and the host may.
    let admin = Caller {
        admin: true,
        ..caller("root", "cli")
    };
    assert!(adb.for_write(&admin, id).is_ok());
    assert!(adb.for_write(&Caller::system(), id).is_ok());
}

#[tokio::test]
async fn private_databases_are_the_owners_alone() {
    let adb = home().await;
    let ann = caller("ann", "notes-app");
    let info = adb
        .create(
            &ann,
            DbConfig {
                alias: None,
                access: Some(Access::Private),
            },
        )
        .await
        .unwrap();
    let id = adb.resolve(&ann, &info.db_id).unwrap();
    assert!(adb.for_read(&ann, id).is_ok());
    assert!(matches!(
        adb.for_read(&caller("bob", "notes-app"), id),
        Err(AdbError::NotAuthorized)
    ));
    assert!(matches!(
        adb.describe(&caller("bob", "notes-app"), id),
        Err(AdbError::NotAuthorized)
    ));
    // Made public by its owner: now readable.
    adb.configure(
        &ann,
        id,
        DbAdminConfig {
            access: Some(Access::Public),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(adb.for_read(&caller("bob", "notes-app"), id).is_ok());
    // Nobody else may reconfigure it or give it away.
    assert!(matches!(
        adb.configure(&caller("bob", "notes-app"), id, DbAdminConfig::default())
            .await,
        Err(AdbError::NotAuthorized)
    ));
    assert!(matches!(
        adb.configure(
            &ann,
            id,
            DbAdminConfig {
                owner: Some(Owner {
                    user_key: Some("bob".into()),
                    service_key: Some("x".into())
                }),
                ..Default::default()
            }
        )
        .await,
        Err(AdbError::NotAuthorized)
    ));
}

#[tokio::test]
async fn aliases_belong_to_the_calling_service() {
    let adb = home().await;
    let ann = caller("ann", "notes-app");
    let a = adb
        .get_or_create(&ann, "main", DbConfig::default())
        .await
        .unwrap();
    let again = adb
        .get_or_create(&ann, "main", DbConfig::default())
        .await
        .unwrap();
    assert_eq!(a.db_id, again.db_id);
    assert_eq!(a.alias.as_deref(), Some("main"));
    // Another service's "main" is another database.
    let other = adb
        .get_or_create(&caller("ann", "todo-app"), "main", DbConfig::default())
        .await
        .unwrap();
    assert_ne!(other.db_id, a.db_id);
    // Ids resolve in either case and as hyper:// URLs; aliases only for their service.
    let id = adb.resolve(&ann, "main").unwrap();
    assert_eq!(id.to_string(), a.db_id);
    assert_eq!(adb.resolve(&ann, &a.db_id.to_uppercase()).unwrap(), id);
    assert_eq!(
        adb.resolve(&ann, &format!("hyper://{}/", a.db_id)).unwrap(),
        id
    );
    assert!(matches!(
        adb.resolve(&caller("bob", "x"), "main"),
        Err(AdbError::NoDatabase(_))
    ));
    // A second database may not take a used alias; an alias may not look like an id.
    assert!(matches!(
        adb.create(
            &ann,
            DbConfig {
                alias: Some("main".into()),
                access: None
            }
        )
        .await,
        Err(AdbError::BadInput(_))
    ));
    assert!(matches!(
        adb.get_or_create(&ann, &"a".repeat(64), DbConfig::default())
            .await,
        Err(AdbError::BadInput(_))
    ));
    // dbList: the service's own databases.
    let listed = adb.list_for_service(&ann).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].db_id, a.db_id);
}

#[tokio::test]
async fn the_server_database_is_the_hosts_alone() {
    let adb = home().await;
    let server = adb.server().id();
    let ann = caller("ann", "notes-app");
    assert!(matches!(
        adb.for_read(&ann, server),
        Err(AdbError::NotAuthorized)
    ));
    assert!(matches!(
        adb.for_write(&ann, server),
        Err(AdbError::NotAuthorized)
    ));
    assert!(adb.for_read(&Caller::system(), server).is_ok());
    let system = adb.list_for_user(&Caller::system(), "system").unwrap();
    assert!(system[0].is_server_db);
    // A user may list their own databases, not another's.
    adb.create(&ann, DbConfig::default()).await.unwrap();
    assert_eq!(adb.list_for_user(&ann, "ann").unwrap().len(), 1);
    assert!(matches!(
        adb.list_for_user(&ann, "bob"),
        Err(AdbError::NotAuthorized)
    ));
}

#[tokio::test]
async fn forgetting_a_database_drops_its_record_only() {
    let adb = home().await;
    let ann = caller("ann", "notes-app");
    let info = adb.create(&ann, DbConfig::default()).await.unwrap();
    let id = adb.resolve(&ann, &info.db_id).unwrap();
    assert!(matches!(
        adb.forget(&caller("bob", "x"), id).await,
        Err(AdbError::NotAuthorized)
    ));
    adb.forget(&ann, id).await.unwrap();
    assert!(adb.record(id).unwrap().is_none());
    assert!(adb.list_for_service(&ann).unwrap().is_empty());
}

#[tokio::test]
async fn a_forgotten_database_is_no_longer_anyones_to_read() {
    let adb = home().await;
    let ann = caller("ann", "notes-app");
    let info = adb
        .create(
            &ann,
            DbConfig {
                alias: None,
                access: Some(Access::Private),
            },
        )
        .await
        .unwrap();
    let id = adb.resolve(&ann, &info.db_id).unwrap();
    adb.forget(&ann, id).await.unwrap();
    for who in [&ann, &caller("bob", "x")] {
        assert!(matches!(
            adb.for_read(who, id),
            Err(AdbError::NotAuthorized)
        ));
    }
    assert!(adb.for_read(&Caller::system(), id).is_ok());
}

#[tokio::test]
async fn aliases_belong_to_a_user_and_a_service_together() {
    let adb = home().await;
    // Browser sessions of two users call with the same service key.
    let ann = caller("ann", "system");
    let bob = caller("bob", "system");
    let a = adb
        .get_or_create(&ann, "notes", DbConfig::default())
        .await
        .unwrap();
    let b = adb
        .get_or_create(&bob, "notes", DbConfig::default())
        .await
        .unwrap();
    assert_ne!(a.db_id, b.db_id);
    assert!(matches!(adb.resolve(&bob, "notes"), Ok(id) if id.to_string() == b.db_id));
    // A user cannot give a database to a service of theirs they do not call with, nor plant
    // an alias in another service's name.
    let mallory = caller("mallory", "mallory-app");
    let planted = DbAdminConfig {
        owner: Some(Owner {
            user_key: Some("mallory".into()),
            service_key: Some("victim-app".into()),
        }),
        alias: Some("main".into()),
        access: None,
    };
    assert!(matches!(
        adb.admin_create(&mallory, planted.clone()).await,
        Err(AdbError::NotAuthorized)
    ));
    let own = adb.create(&mallory, DbConfig::default()).await.unwrap();
    let own = adb.resolve(&mallory, &own.db_id).unwrap();
    assert!(matches!(
        adb.configure(&mallory, own, planted).await,
        Err(AdbError::NotAuthorized)
    ));
    // Two databases of one owner cannot share an alias.
    let first = adb
        .get_or_create(&mallory, "one", DbConfig::default())
        .await
        .unwrap();
    let _ = first;
    assert!(matches!(
        adb.configure(
            &mallory,
            own,
            DbAdminConfig {
                alias: Some("one".into()),
                ..Default::default()
            }
        )
        .await,
        Err(AdbError::BadInput(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_get_or_create_makes_one_database() {
    let adb = Arc::new(home().await);
    let ann = caller("ann", "notes-app");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (adb, ann) = (adb.clone(), ann.clone());
            tokio::spawn(async move {
                adb.get_or_create(&ann, "main", DbConfig::default())
                    .await
                    .unwrap()
                    .db_id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(adb.list_for_service(&ann).unwrap().len(), 1);
}

#[tokio::test]
async fn nobody_writes_the_server_database_through_adb() {
    let adb = home().await;
    let server = adb.server().id();
    assert!(matches!(
        adb.for_write(&Caller::system(), server),
        Err(AdbError::BadInput(_))
    ));
    let admin = Caller {
        admin: true,
        ..caller("root", "cli")
    };
    assert!(matches!(
        adb.for_write(&admin, server),
        Err(AdbError::BadInput(_))
    ));
    assert!(adb.for_read(&admin, server).is_ok());
    // Describing a database tells a reader who cannot write it so.
    let ann = caller("ann", "notes-app");
    let info = adb.create(&ann, DbConfig::default()).await.unwrap();
    let id = adb.resolve(&ann, &info.db_id).unwrap();
    assert!(adb.describe(&ann, id).unwrap().writable);
    assert!(!adb.describe(&caller("bob", "x"), id).unwrap().writable);
}

#[tokio::test]
async fn a_user_may_own_only_so_many_databases() {
    let adb = home().await;
    let ann = caller("ann", "loop-app");
    for _ in 0..atek_db::MAX_DATABASES_PER_USER {
        adb.create(&ann, DbConfig::default()).await.unwrap();
    }
    let err = adb.create(&ann, DbConfig::default()).await.unwrap_err();
    assert!(
        matches!(&err, AdbError::BadInput(m) if m.contains("delete some")),
        "{err}"
    );
    // Others are not held back by ann's quota.
    adb.create(&caller("bob", "x"), DbConfig::default())
        .await
        .unwrap();
}
