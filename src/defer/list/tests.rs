//! DeferredList, gather_results and race (reference §1.6 and §2.12).

use crate::defer::test_log::capture;
use crate::defer::{
    Deferred, DeferredList, Failure, FailureGroup, FailureKind, ListResult, fail, gather_results,
    race, succeed,
};

fn all<T: 'static>(d: &Deferred<ListResult<T>>) -> Vec<Result<T, Failure>> {
    match d.take_result().expect("fired").expect("succeeded") {
        ListResult::All(v) => v,
        ListResult::One { .. } => panic!("expected every result"),
    }
}

#[test]
fn results_come_in_member_order_whatever_the_firing_order() {
    let (a, b, c) = (Deferred::new(), Deferred::new(), Deferred::new());
    let list = DeferredList::new(vec![a.clone(), b.clone(), c.clone()]).into_deferred();
    c.callback(3).unwrap();
    a.callback(1).unwrap();
    assert!(!list.called());
    b.errback(Failure::msg("two")).unwrap();
    let results = all(&list);
    assert_eq!(results[0].as_ref().unwrap(), &1);
    assert_eq!(results[1].as_ref().unwrap_err().to_string(), "two");
    assert_eq!(results[2].as_ref().unwrap(), &3);
    // Without consume_errors the member keeps its failure.
    assert!(b.take_result().unwrap().is_err());
}

#[test]
fn an_empty_list_fires_at_once_unless_fire_on_one_callback() {
    let list = DeferredList::<u8>::new(vec![]).into_deferred();
    assert!(all(&list).is_empty());
    let never = DeferredList::<u8>::new(vec![])
        .fire_on_one_callback(true)
        .into_deferred();
    assert!(!never.called());
}

#[test]
fn fire_on_one_callback_gives_the_first_success_and_its_index() {
    let (a, b) = (Deferred::new(), Deferred::new());
    let list = DeferredList::new(vec![a.clone(), b.clone()])
        .fire_on_one_callback(true)
        .into_deferred();
    b.callback("b").unwrap();
    match list.take_result().unwrap().unwrap() {
        ListResult::One { index, value } => assert_eq!((index, value), (1, "b")),
        ListResult::All(_) => panic!("expected one"),
    }
    a.callback("a").unwrap();
}

#[test]
fn fire_on_one_callback_with_every_member_failing_gives_every_failure() {
    let list = DeferredList::new(vec![fail::<u8>(Failure::msg("1")), fail(Failure::msg("2"))])
        .fire_on_one_callback(true)
        .consume_errors(true)
        .into_deferred();
    assert_eq!(all(&list).len(), 2);
}

#[test]
fn fire_on_one_errback_fails_with_first_error() {
    let (a, b) = (Deferred::<u8>::new(), Deferred::new());
    let list = DeferredList::new(vec![a.clone(), b.clone()])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .into_deferred();
    b.errback(Failure::msg("b failed")).unwrap();
    let f = list.take_result().unwrap().unwrap_err();
    assert_eq!(f.kind(), FailureKind::FirstError);
    let (index, inner) = f.first_error().unwrap();
    assert_eq!((index, inner.to_string().as_str()), (1, "b failed"));
    a.callback(1).unwrap();
}

#[test]
fn consume_errors_decides_whether_members_log_their_failures() {
    let ((), logs) = capture(|| {
        let list = DeferredList::new(vec![fail::<u8>(Failure::msg("consumed"))])
            .consume_errors(true)
            .into_deferred();
        drop(all(&list));
    });
    assert!(logs.lines().is_empty(), "{:?}", logs.lines());
    let ((), logs) = capture(|| {
        let list = DeferredList::new(vec![fail::<u8>(Failure::msg("kept"))]).into_deferred();
        drop(all(&list));
    });
    assert_eq!(logs.count("Unhandled error in Deferred: kept"), 1);
}

#[test]
fn cancelling_the_list_cancels_every_member() {
    let (a, b) = (Deferred::<u8>::new(), Deferred::<u8>::new());
    let list = DeferredList::new(vec![a.clone(), b.clone()])
        .consume_errors(true)
        .into_deferred();
    list.cancel();
    assert!(a.called() && b.called());
    let results = all(&list);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == FailureKind::Cancelled)
    );
}

#[test]
fn gather_results_gives_plain_values() {
    let (a, b) = (Deferred::new(), Deferred::new());
    let g = gather_results(vec![a.clone(), b.clone()], false);
    b.callback(2).unwrap();
    a.callback(1).unwrap();
    assert_eq!(g.take_result().unwrap().unwrap(), vec![1, 2]);
}

#[test]
fn gather_results_fails_with_the_first_error() {
    let (a, b) = (Deferred::<u8>::new(), Deferred::new());
    let g = gather_results(vec![a.clone(), b.clone()], true);
    a.errback(Failure::msg("first")).unwrap();
    b.errback(Failure::msg("second")).unwrap();
    let f = g.take_result().unwrap().unwrap_err();
    let (index, inner) = f.first_error().unwrap();
    assert_eq!((index, inner.to_string().as_str()), (0, "first"));
}

#[test]
fn cancelling_gather_results_cancels_the_members() {
    let (a, b) = (Deferred::<u8>::new(), Deferred::<u8>::new());
    let g = gather_results(vec![a.clone(), b.clone()], true);
    g.cancel();
    assert!(a.called() && b.called());
    let f = g.take_result().unwrap().unwrap_err();
    assert_eq!(f.first_error().unwrap().1.kind(), FailureKind::Cancelled);
}

#[test]
fn race_gives_the_first_success_and_cancels_the_rest_quietly() {
    let ((), logs) = capture(|| {
        let (a, b, c) = (Deferred::<u8>::new(), Deferred::new(), Deferred::new());
        let r = race(vec![a.clone(), b.clone(), c.clone()]);
        a.errback(Failure::msg("a lost")).unwrap();
        c.callback(3).unwrap();
        assert_eq!(r.take_result().unwrap().unwrap(), (2, 3));
        assert!(b.called(), "the loser was cancelled");
        assert!(a.is_consumed() && b.is_consumed());
    });
    assert!(logs.lines().is_empty(), "{:?}", logs.lines());
}

#[test]
fn race_with_every_member_failing_gives_a_failure_group() {
    let r = race(vec![fail::<u8>(Failure::msg("1")), fail(Failure::msg("2"))]);
    let f = r.take_result().unwrap().unwrap_err();
    assert_eq!(f.kind(), FailureKind::FailureGroup);
    assert_eq!(f.downcast_ref::<FailureGroup>().unwrap().failures.len(), 2);
    let empty = race(Vec::<Deferred<u8>>::new());
    assert_eq!(
        empty.take_result().unwrap().unwrap_err().kind(),
        FailureKind::FailureGroup
    );
}

#[test]
fn cancelling_a_race_cancels_every_member() {
    let (a, b) = (Deferred::<u8>::new(), Deferred::<u8>::new());
    let r = race(vec![a.clone(), b.clone()]);
    r.cancel();
    assert!(a.called() && b.called());
    assert!(r.take_result().unwrap().is_err());
}

#[test]
fn a_member_that_already_fired_counts() {
    let list = gather_results(vec![succeed(1), succeed(2)], false);
    assert_eq!(list.take_result().unwrap().unwrap(), vec![1, 2]);
}
