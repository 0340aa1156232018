#!/usr/bin/python3
"""A client in another language: drives a real schemagated from Python.

Uses Debian's python3-grpcio with stubs that the build generates from
proto/schemagate/v1/schemagate.proto (protoc + grpc_python_plugin). Needs
SCHEMAGATE_TEST_DATABASE_URL (an admin URL; a database is created and
dropped) and SCHEMAGATE_BIN_DIR (where the binaries are).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import grpc
from schemagate.v1 import schemagate_pb2 as pb
from schemagate.v1 import schemagate_pb2_grpc as rpc

ADMIN_URL = os.environ.get("SCHEMAGATE_TEST_DATABASE_URL", "")
BIN_DIR = os.environ.get("SCHEMAGATE_BIN_DIR", "build")


def with_database(url, name):
    head, _, tail = url.rpartition("/")
    query = tail.partition("?")[2]
    return f"{head}/{name}" + (f"?{query}" if query else "")


def psql(url, sql):
    subprocess.run(["psql", url, "-XAtqc", sql], check=True, capture_output=True, text=True)


@unittest.skipUnless(ADMIN_URL, "set SCHEMAGATE_TEST_DATABASE_URL")
class PythonClientTest(unittest.TestCase):
    def setUp(self):
        self.db = "sg_py_" + uuid.uuid4().hex[:12]
        psql(ADMIN_URL, f"CREATE DATABASE {self.db}")
        self.url = with_database(ADMIN_URL, self.db)
        self.dir = tempfile.mkdtemp(prefix="schemagate-py-")
        for v in (1, 2, 3):
            with open(os.path.join(self.dir, f"000{v}_t{v}.up.sql"), "w") as f:
                f.write(f"CREATE TABLE t{v} (id int);\n")
        self.log = tempfile.NamedTemporaryFile(prefix="schemagated-", suffix=".log", delete=False)
        self.coordinator = subprocess.Popen(
            [os.path.join(BIN_DIR, "schemagated"), "--database-url", self.url,
             "--migrations-dir", self.dir, "--listen", "127.0.0.1:0", "--apply", "manual"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.address = self.wait_for_port()
        self.channel = grpc.insecure_channel(self.address)
        self.agent = rpc.AgentServiceStub(self.channel)
        self.operator = rpc.OperatorServiceStub(self.channel)
        self.children = []

    def tearDown(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.channel.close()
        self.coordinator.send_signal(signal.SIGTERM)
        self.coordinator.wait(timeout=15)
        psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.unlink(self.log.name)

    def wait_for_port(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(self.log.name) as f:
                m = re.search(r"serving on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                return f"127.0.0.1:{m.group(1)}"
            if self.coordinator.poll() is not None:
                break
            time.sleep(0.05)
        with open(self.log.name) as f:
            self.fail("schemagated did not start:\n" + f.read())

    def test_check_wait_status_and_instances(self):
        # Manual mode: everything pending, as the status says.
        status = self.eventually(
            lambda: self.operator.GetStatus(pb.GetStatusRequest(), timeout=5),
            lambda s: s.state == pb.BEHIND)
        self.assertEqual(status.pending_count, 3)
        self.assertEqual(status.apply_mode, pb.MANUAL)

        target = pb.AppTarget(app="py", app_version="1.0", known_version=3, required_version=3)
        answer = self.agent.Check(pb.CheckRequest(target=target, instance_id="py-1"), timeout=5)
        self.assertEqual(answer.state, pb.PENDING)
        self.assertEqual(answer.blocking_version, 1)

        # A bad request is INVALID_ARGUMENT with a reason.
        with self.assertRaises(grpc.RpcError) as bad:
            self.agent.Check(pb.CheckRequest(target=pb.AppTarget(known_version=1,
                                                                  required_version=2)),
                             timeout=5)
        self.assertEqual(bad.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

        # Wait streams PENDING, then READY once an operator applies.
        stream = self.agent.Wait(pb.WaitRequest(target=target, instance_id="py-1"), timeout=60)
        first = next(stream)
        self.assertEqual(first.state, pb.PENDING)
        progress = list(self.operator.Apply(pb.ApplyRequest(actor="python"), timeout=60))
        self.assertEqual(sum(p.kind == pb.MIGRATION_FINISHED for p in progress), 3)
        states = [r.state for r in stream]
        self.assertEqual(states[-1], pb.READY)

        status = self.operator.GetStatus(pb.GetStatusRequest(), timeout=5)
        self.assertEqual(status.state, pb.CURRENT)
        self.assertEqual(status.applied_version, 3)

        # An app behind the real agent shows up in the fleet.
        app = subprocess.Popen(
            [os.path.join(BIN_DIR, "schemagate-agent"), "wait", "--coordinator", self.address,
             "--app", "py-app", "--app-version", "2.0", "--instance-id", "py-app-1", "--",
             "sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.children.append(app)
        fleet = self.eventually(
            lambda: self.operator.ListInstances(pb.ListInstancesRequest(), timeout=5),
            lambda r: any(i.instance_id == "py-app-1" for i in r.instances))
        instance = [i for i in fleet.instances if i.instance_id == "py-app-1"][0]
        self.assertEqual(instance.app, "py-app")
        self.assertEqual(instance.state, pb.READY)
        self.assertEqual(instance.known_version, 3)
        self.assertIn(pb.VersionCount(app="py-app", app_version="2.0", instances=1), fleet.counts)

    def eventually(self, call, predicate, seconds=20):
        deadline = time.time() + seconds
        value = call()
        while not predicate(value) and time.time() < deadline:
            time.sleep(0.1)
            value = call()
        self.assertTrue(predicate(value), f"condition never held; last value: {value}")
        return value


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed"
          + (f", {len(result.skipped)} skipped" if result.skipped else ""))
    sys.exit(1 if failed or (os.environ.get("CI") and result.skipped) else 0)
