// A real HDFS for Bay's tests and `bay up`: Hadoop's MiniDFSCluster with its
// NameNode and DataNodes listening on one given address (MiniDFSClusterManager
// forces loopback), so WebHDFS redirects reach the DataNodes from other hosts
// on that network. Run in source-file mode: java -cp JARS BayMiniDFS.java ...
//   args: BIND_ADDRESS NAMENODE_HTTP_PORT DATANODES BASE_DIR DETAILS_JSON
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class BayMiniDFS {
    public static void main(String[] args) throws Exception {
        String bind = args[0];
        int http = Integer.parseInt(args[1]);
        int datanodes = Integer.parseInt(args[2]);
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, args[3]);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.set("dfs.namenode.http-bind-host", bind);
        conf.set("dfs.datanode.address", bind + ":0");
        conf.set("dfs.datanode.http.address", bind + ":0");
        conf.set("dfs.datanode.ipc.address", bind + ":0");
        conf.set("dfs.datanode.hostname", bind);
        conf.setBoolean("dfs.client.use.datanode.hostname", true);  // the DataNodes are not on loopback
        conf.setInt("dfs.replication", Math.min(3, datanodes));
        // small objects (the registry's links, tags, manifests): closing a file need
        // not wait for the DataNode's block report to reach the NameNode (else the
        // writer's first retry of complete() sleeps 400 ms); a site's own HDFS wants
        // the same NameNode setting for a registry (README)
        conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
        conf.setInt("dfs.client.block.write.locateFollowingBlock.initial.delay.ms", 20);
        // WebHDFS reads are served by the DataNode that holds the block, through a
        // DFSClient inside the DataNode: short-circuit local reads let that client
        // read the block file itself instead of over the DataNode's own TCP data
        // transfer port (about a third less CPU per byte read on a 2-core machine).
        // The jars from Maven carry no libhadoop, so no domain sockets here: this is
        // the legacy (path-based) form, limited to the DataNode's own user; a site's
        // HDFS uses the domain-socket form (README).
        conf.setBoolean("dfs.client.read.shortcircuit", true);
        conf.setBoolean("dfs.client.use.legacy.blockreader.local", true);
        conf.set("dfs.block.local-path-access.user", System.getProperty("user.name"));
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
            .numDataNodes(datanodes).nameNodeHttpPort(http)
            .checkDataNodeAddrConfig(true).checkDataNodeHostConfig(true)
            .format(true).build();
        cluster.waitActive();
        Files.writeString(Path.of(args[4]),
            "{\"namenode_port\": " + cluster.getNameNodePort() + ", \"http_port\": " + http + "}");
        Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
        Thread.currentThread().join();
    }
}
