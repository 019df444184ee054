package mlops.local;

import java.util.Map;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException;
import org.apache.spark.sql.catalyst.analysis.NoSuchTableException;
import org.apache.spark.sql.catalyst.analysis.TableAlreadyExistsException;
import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.catalog.DelegatingCatalogExtension;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.connector.catalog.StagedTable;
import org.apache.spark.sql.connector.catalog.StagingTableCatalog;
import org.apache.spark.sql.connector.catalog.TableInfo;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * A Spark catalog plugin that answers to a Unity Catalog catalog name (e.g. {@code workspace}) and
 * delegates every call to the session catalog (Delta's {@code DeltaCatalog}), so three-level names
 * {@code catalog.schema.table} work locally in {@code spark.table}, {@code saveAsTable}, SQL and
 * {@code DeltaTable.forName}, as they do on Databricks.
 *
 * <p>It stages creates and replaces through Delta's catalog too, so {@code saveAsTable},
 * {@code writeTo(...).createOrReplace()} and {@code CREATE OR REPLACE TABLE ... AS SELECT} commit
 * atomically in one version, as on Databricks.
 *
 * <p>Every alias shares the session catalog's schemas: {@code a.s.t} and {@code b.s.t} are one table.
 * Registered per catalog name with {@code spark.sql.catalog.<name>=mlops.local.SessionCatalogAlias}.
 */
public class SessionCatalogAlias extends DelegatingCatalogExtension implements StagingTableCatalog {
  private String catalogName;

  @Override
  public void initialize(String name, CaseInsensitiveStringMap options) {
    this.catalogName = name;
    setDelegateCatalog(SparkSession.active().sessionState().catalogManager().v2SessionCatalog());
  }

  @Override
  public String name() {
    return catalogName;
  }

  private StagingTableCatalog staging() {
    return (StagingTableCatalog) delegate;
  }

  @Override
  public StagedTable stageCreate(Identifier ident, StructType schema, Transform[] partitions,
      Map<String, String> properties) throws TableAlreadyExistsException, NoSuchNamespaceException {
    return staging().stageCreate(ident, schema, partitions, properties);
  }

  @Override
  public StagedTable stageCreate(Identifier ident, Column[] columns, Transform[] partitions,
      Map<String, String> properties) throws TableAlreadyExistsException, NoSuchNamespaceException {
    return staging().stageCreate(ident, columns, partitions, properties);
  }

  @Override
  public StagedTable stageCreate(Identifier ident, TableInfo info)
      throws TableAlreadyExistsException, NoSuchNamespaceException {
    return staging().stageCreate(ident, info);
  }

  @Override
  public StagedTable stageReplace(Identifier ident, StructType schema, Transform[] partitions,
      Map<String, String> properties) throws NoSuchNamespaceException, NoSuchTableException {
    return staging().stageReplace(ident, schema, partitions, properties);
  }

  @Override
  public StagedTable stageReplace(Identifier ident, Column[] columns, Transform[] partitions,
      Map<String, String> properties) throws NoSuchNamespaceException, NoSuchTableException {
    return staging().stageReplace(ident, columns, partitions, properties);
  }

  @Override
  public StagedTable stageReplace(Identifier ident, TableInfo info)
      throws NoSuchNamespaceException, NoSuchTableException {
    return staging().stageReplace(ident, info);
  }

  @Override
  public StagedTable stageCreateOrReplace(Identifier ident, StructType schema, Transform[] partitions,
      Map<String, String> properties) throws NoSuchNamespaceException {
    return staging().stageCreateOrReplace(ident, schema, partitions, properties);
  }

  @Override
  public StagedTable stageCreateOrReplace(Identifier ident, Column[] columns, Transform[] partitions,
      Map<String, String> properties) throws NoSuchNamespaceException {
    return staging().stageCreateOrReplace(ident, columns, partitions, properties);
  }

  @Override
  public StagedTable stageCreateOrReplace(Identifier ident, TableInfo info) throws NoSuchNamespaceException {
    return staging().stageCreateOrReplace(ident, info);
  }
}
