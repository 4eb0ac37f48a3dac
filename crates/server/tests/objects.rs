//! Connections, opens, the sysfs view, tags, and last close through the
//! hang-up of an object fd.

mod common;

use common::*;
use wire::msg::IoctlArg;
use wire::{Node, ObjectKind, Reply, Request, Role};

#[test]
fn hello_names_the_server_and_the_devices_it_serves() {
    let srv = TestServer::start(&["edu-plus", "edu"], &[0, 1]);
    let c = Client::new(&srv);
    wire::transport::send(&c.conn, &Request::Hello { token: 1, role: Role::Control }, &[]).unwrap();
    // A second Hello on the same connection is refused.
    let (reply, _): (Reply, _) = wire::transport::recv(&c.conn).unwrap();
    assert_eq!(reply, Reply::Err { errno: EINVAL });
    let conn = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&conn, &rustix::net::SocketAddrUnix::new(&srv.path).unwrap()).unwrap();
    wire::transport::send(&conn, &Request::Hello { token: token(), role: Role::Control }, &[]).unwrap();
    let (reply, _): (Reply, _) = wire::transport::recv(&conn).unwrap();
    assert_eq!(
        reply,
        Reply::Hello { server_pid: std::process::id(), bdfs: vec!["0000:00:03.0".into(), "0000:00:04.0".into()] }
    );
}

#[test]
fn a_connection_that_does_not_start_with_hello_is_closed() {
    let srv = TestServer::edu_plus();
    let conn = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&conn, &rustix::net::SocketAddrUnix::new(&srv.path).unwrap()).unwrap();
    wire::transport::send(&conn, &Request::Sync, &[]).unwrap();
    assert!(matches!(wire::transport::recv::<Reply>(&conn), Err(wire::transport::WireError::Closed)));
}

#[test]
fn every_object_fd_carries_the_tag_of_its_kind() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    assert_eq!(tag_kind(&c.open("/dev/vfio/vfio").unwrap()), Some(ObjectKind::Container));
    let group = c.open("/dev/vfio/0").unwrap();
    assert_eq!(tag_kind(&group), Some(ObjectKind::Group));
    c.close(group);
    assert_eq!(tag_kind(&c.open("/dev/iommu").unwrap()), Some(ObjectKind::Iommufd));
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(tag_kind(&dev), Some(ObjectKind::Device));
    let buf = c.export(&dev, 1, 0, 0x1000).unwrap();
    assert_eq!(tag_kind(&buf), Some(ObjectKind::DmaBuf));
}

#[test]
fn paths_that_are_not_served_do_not_open() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    assert_eq!(c.open("/dev/vfio/7").unwrap_err(), libc::ENOENT, "no group 7");
    assert_eq!(c.open("/dev/vfio/00").unwrap_err(), libc::ENOENT, "not the node's spelling");
    assert_eq!(c.open("/dev/vfio/devices/vfio3").unwrap_err(), libc::ENOENT);
    assert_eq!(c.open("/dev/vfio").unwrap_err(), libc::EISDIR);
    assert_eq!(c.open("/sys/bus/pci/devices/0000:00:03.0/vendor").unwrap_err(), libc::ENXIO);
}

#[test]
fn a_second_open_of_an_open_group_is_ebusy_until_the_last_close() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let group = c.open("/dev/vfio/0").unwrap();
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY);
    // A dup is the same open file: closing one keeps the group open.
    let dup = group.try_clone().unwrap();
    c.close(group);
    assert_eq!(c.open("/dev/vfio/0").unwrap_err(), libc::EBUSY);
    // The last close, then Sync: the release has run.
    c.close(dup);
    let again = c.open("/dev/vfio/0").unwrap();
    assert_eq!(tag_kind(&again), Some(ObjectKind::Group));
}

#[test]
fn the_sysfs_view_shows_the_device_its_group_and_its_cdev() {
    let srv = TestServer::start(&["edu-plus", "edu"], &[5, 5]);
    let c = Client::new(&srv);
    let dev = "/sys/bus/pci/devices/0000:00:03.0";
    assert!(matches!(c.lookup(dev), Node::Dir(e) if e.contains(&"iommu_group".to_owned())));
    assert_eq!(c.lookup(&format!("{dev}/iommu_group")), Node::Link("../../../../kernel/iommu_groups/5".into()));
    assert_eq!(c.lookup(&format!("{dev}/vfio-dev")), Node::Dir(vec!["vfio0".into()]));
    assert_eq!(c.lookup(&format!("{dev}/vfio-dev/vfio0/dev")), Node::File(b"237:0\n".to_vec()));
    assert_eq!(c.lookup(&format!("{dev}/vendor")), Node::File(b"0x1234\n".to_vec()));
    assert_eq!(c.lookup(&format!("{dev}/device")), Node::File(b"0x11e8\n".to_vec()));
    assert_eq!(
        c.lookup("/sys/kernel/iommu_groups/5/devices"),
        Node::Dir(vec!["0000:00:03.0".into(), "0000:00:04.0".into()])
    );
    assert_eq!(
        c.lookup("/sys/kernel/iommu_groups/5/devices/0000:00:04.0"),
        Node::Link("../../../../bus/pci/devices/0000:00:04.0".into())
    );
    assert_eq!(
        c.lookup("/sys/class/vfio-dev/vfio1"),
        Node::Link("../../bus/pci/devices/0000:00:04.0/vfio-dev/vfio1".into())
    );
    assert_eq!(c.lookup("/dev/vfio/vfio"), Node::CharDev { major: 10, minor: 196 });
    assert_eq!(c.lookup("/dev/iommu"), Node::CharDev { major: 10, minor: 123 });
    assert_eq!(c.lookup("/dev/vfio/5"), Node::CharDev { major: 243, minor: 5 });
    assert_eq!(c.lookup("/dev/vfio/devices/vfio1"), Node::CharDev { major: 237, minor: 1 });
    assert_eq!(c.lookup("/dev/vfio"), Node::Dir(vec!["vfio".into(), "devices".into(), "5".into()]));
    assert_eq!(c.lookup("/dev/vfio/6"), Node::Missing);
    assert_eq!(c.lookup("/sys/bus/pci/devices/0000:00:09.0"), Node::Missing);
    assert_eq!(c.lookup(&format!("{dev}/nothing")), Node::Missing);
}

#[test]
fn an_ioctl_the_server_does_not_know_is_enotty() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let group = c.open("/dev/vfio/0").unwrap();
    assert_eq!(c.ioctl_errno(&group, io(107), IoctlArg::Value(0)), libc::ENOTTY, "a device call on a group");
    c.close(group);
    let (_iommufd, dev) = c.bound_device(0);
    assert_eq!(c.ioctl_errno(&dev, 0x1234, IoctlArg::Value(0)), libc::ENOTTY);
    let buf = c.export(&dev, 1, 0, 0x1000).unwrap();
    assert_eq!(c.ioctl_errno(&buf, 0x5401, IoctlArg::Value(0)), libc::ENOTTY);
}

#[test]
fn a_request_without_an_object_fd_of_ours_is_ebadf() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    match c.call(&Request::Ioctl { request: GROUP_GET_STATUS, arg: IoctlArg::Value(0), bad_fds: vec![] }, &[]) {
        (Reply::Err { errno }, _) => assert_eq!(errno, libc::EBADF),
        other => panic!("{other:?}"),
    }
    let (a, _b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    assert_eq!(c.ioctl_errno(&a, GROUP_GET_STATUS, IoctlArg::Value(0)), libc::EBADF, "a foreign socket");
}

#[test]
fn files_without_read_or_mmap_refuse_them() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let group = c.open("/dev/vfio/0").unwrap();
    assert_eq!(c.pread(&group, 0, 4), Err(libc::EINVAL));
    assert_eq!(c.pwrite(&group, 0, &[0]), Err(libc::EINVAL));
    let _notify = Notifier::acking(&srv, c.token);
    assert_eq!(c.mmap(&group, 1, 0, 0x1000).unwrap_err(), libc::ENODEV);
}

#[test]
fn shutdown_removes_the_socket_and_ends_every_connection() {
    let srv = TestServer::edu_plus();
    let c = Client::new(&srv);
    let path = srv.path.clone();
    srv.stop();
    assert!(!path.exists());
    assert!(wire::transport::recv::<Reply>(&c.conn).is_err());
}
