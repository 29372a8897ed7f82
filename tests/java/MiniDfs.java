// Runs Hadoop's MiniDFSCluster (one NameNode, one DataNode) on 127.0.0.1 with ephemeral ports
// for sluice's integration tests (tests/src/hdfs.rs compiles and starts it).
//
// Usage: java -cp <hadoop-client-minicluster jars> MiniDfs <base dir>
// Prints `NAMENODE hdfs://127.0.0.1:<port>` once the cluster is active, then reads commands,
// one per stdin line, answering `DONE <command>` or `FAILED <command>: <reason>`:
//   stop-datanode     stops the DataNode (its ports are kept for the restart)
//   start-datanode    starts the stopped DataNode again and waits until it is registered
//   restart-datanode  both
//   read-seq <path>   prints `RECORD <key> <value class> <value bytes in hex>` for every
//                     record of a SequenceFile, read with Hadoop's SequenceFile.Reader
//   read-avro <path>  prints `RECORD <schema name> <headers k=v;... in hex> <body in hex>`
//                     for every record of an Avro container file, read with Apache Avro's
//                     DataFileStream (the library Flume and avro-tools use)
//   read-datums <path> prints `DATUM <schema name> <datum re-encoded by Avro, in hex>` for
//                     every datum of an Avro container file of any schema
//   read-codec <path> prints `LINE <line in hex>` for every line of a compressed file, read
//                     through the codec Hadoop's CompressionCodecFactory picks by its
//                     extension (GzipCodec, BZip2Codec, SnappyCodec): Hadoop is the judge
// End of input (the test process exited) shuts the cluster down.
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.Map;
import java.util.TreeMap;

import org.apache.avro.file.DataFileStream;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.hadoop.fs.FSDataInputStream;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.io.BytesWritable;
import org.apache.hadoop.io.LongWritable;
import org.apache.hadoop.io.SequenceFile;
import org.apache.hadoop.io.Text;
import org.apache.hadoop.io.Writable;
import org.apache.hadoop.util.ReflectionUtils;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class MiniDfs {
  public static void main(String[] args) throws Exception {
    File base = new File(args[0]);
    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getAbsolutePath());
    conf.set("dfs.replication", "1");
    conf.set("dfs.blocksize", "16777216");
    conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.datanode.address", "127.0.0.1:0");
    conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
    conf.set("dfs.datanode.http.address", "127.0.0.1:0");
    conf.set("dfs.namenode.http-address", "127.0.0.1:0");
    conf.set("dfs.heartbeat.interval", "1");
    conf.set("dfs.namenode.heartbeat.recheck-interval", "2000");
    // A writer whose DataNode went away must not wait minutes to fail over its pipeline.
    conf.set("dfs.client.block.write.replace-datanode-on-failure.enable", "false");
    conf.set("dfs.namenode.safemode.extension", "0");
    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
        .numDataNodes(1)
        .nameNodePort(0)
        .manageNameDfsDirs(true)
        .format(true)
        .build();
    cluster.waitActive();
    System.out.println("NAMENODE hdfs://127.0.0.1:" + cluster.getNameNodePort());
    System.out.flush();
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    MiniDFSCluster.DataNodeProperties stopped = null;
    String line;
    while ((line = in.readLine()) != null) {
      String cmd = line.trim();
      if (cmd.isEmpty()) {
        continue;
      }
      try {
        if (cmd.startsWith("read-avro ")) {
          readAvro(cluster.getFileSystem(), cmd.substring("read-avro ".length()));
          System.out.println("DONE " + cmd);
          System.out.flush();
          continue;
        }
        if (cmd.startsWith("read-datums ")) {
          readDatums(cluster.getFileSystem(), cmd.substring("read-datums ".length()));
          System.out.println("DONE " + cmd);
          System.out.flush();
          continue;
        }
        if (cmd.startsWith("read-codec ")) {
          readCodec(cluster.getFileSystem(), conf, cmd.substring("read-codec ".length()));
          System.out.println("DONE " + cmd);
          System.out.flush();
          continue;
        }
        if (cmd.startsWith("read-seq ")) {
          readSequenceFile(cluster.getFileSystem(), cmd.substring("read-seq ".length()));
          System.out.println("DONE " + cmd);
          System.out.flush();
          continue;
        }
        switch (cmd) {
          case "stop-datanode":
            if (stopped == null) {
              stopped = cluster.stopDataNode(0);
            }
            break;
          case "start-datanode":
            if (stopped != null) {
              cluster.restartDataNode(stopped, true);
              stopped = null;
              cluster.waitActive();
            }
            break;
          case "restart-datanode":
            cluster.restartDataNode(0, true);
            cluster.waitActive();
            break;
          default:
            throw new IllegalArgumentException("unknown command");
        }
        System.out.println("DONE " + cmd);
      } catch (Exception e) {
        System.out.println("FAILED " + cmd + ": " + e);
      }
      System.out.flush();
    }
    cluster.shutdown(true);
    System.exit(0);
  }

  static void readDatums(FileSystem fs, String path) throws Exception {
    HexFormat hex = HexFormat.of();
    try (FSDataInputStream in = fs.open(new Path(path));
        DataFileStream<Object> r = new DataFileStream<>(in, new GenericDatumReader<Object>())) {
      org.apache.avro.Schema schema = r.getSchema();
      org.apache.avro.generic.GenericDatumWriter<Object> w =
          new org.apache.avro.generic.GenericDatumWriter<>(schema);
      for (Object datum : r) {
        java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
        org.apache.avro.io.BinaryEncoder enc =
            org.apache.avro.io.EncoderFactory.get().binaryEncoder(bytes, null);
        w.write(datum, enc);
        enc.flush();
        System.out.println("DATUM " + schema.getFullName() + " " + hex.formatHex(bytes.toByteArray()));
      }
    }
  }

  static void readCodec(FileSystem fs, Configuration conf, String path) throws Exception {
    HexFormat hex = HexFormat.of();
    org.apache.hadoop.io.compress.CompressionCodec codec =
        new org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(new Path(path));
    if (codec == null) {
      throw new IllegalArgumentException("no Hadoop codec for " + path);
    }
    System.out.println("CODEC " + codec.getClass().getName());
    try (java.io.InputStream in = codec.createInputStream(fs.open(new Path(path)));
        BufferedReader r =
            new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
      String l;
      while ((l = r.readLine()) != null) {
        System.out.println("LINE " + hex.formatHex(l.getBytes(StandardCharsets.UTF_8)));
      }
    }
  }

  static void readAvro(FileSystem fs, String path) throws Exception {
    HexFormat hex = HexFormat.of();
    try (FSDataInputStream in = fs.open(new Path(path));
        DataFileStream<GenericRecord> r =
            new DataFileStream<>(in, new GenericDatumReader<GenericRecord>())) {
      String name = r.getSchema().getFullName();
      for (GenericRecord rec : r) {
        Map<String, String> headers = new TreeMap<>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) rec.get("headers")).entrySet()) {
          headers.put(e.getKey().toString(), e.getValue().toString());
        }
        StringBuilder h = new StringBuilder();
        for (Map.Entry<String, String> e : headers.entrySet()) {
          h.append(e.getKey()).append('=').append(e.getValue()).append(';');
        }
        ByteBuffer body = (ByteBuffer) rec.get("body");
        byte[] bytes = new byte[body.remaining()];
        body.get(bytes);
        System.out.println("RECORD " + name + " "
            + hex.formatHex(h.toString().getBytes(StandardCharsets.UTF_8)) + " "
            + hex.formatHex(bytes));
      }
    }
  }

  static void readSequenceFile(FileSystem fs, String path) throws Exception {
    Configuration conf = fs.getConf();
    Path p = fs.makeQualified(new Path(path));
    try (SequenceFile.Reader r = new SequenceFile.Reader(conf, SequenceFile.Reader.file(p))) {
      Writable k = (Writable) ReflectionUtils.newInstance(r.getKeyClass(), conf);
      Writable v = (Writable) ReflectionUtils.newInstance(r.getValueClass(), conf);
      while (r.next(k, v)) {
        byte[] bytes = v instanceof BytesWritable ? ((BytesWritable) v).copyBytes()
            : ((Text) v).copyBytes();
        System.out.println("RECORD " + ((LongWritable) k).get() + " "
            + r.getValueClassName() + " " + HexFormat.of().formatHex(bytes));
      }
    }
  }
}
